#define BOOST_TEST_MODULE exec_platform
#include <boost/test/unit_test.hpp>

// The exec backend against hooks the test writes as shell scripts into a
// fresh directory. A hook's environment is memlend's clean one, so each script
// names the directory it reports into literally. Nothing waits on the clock:
// a hook that hangs is ended by the platform's own deadline, and what it left
// behind is reaped by this process, which is made their subreaper, so that a
// process group's end is a fact to check, not a moment to wait for.

#include "firmware_hooks/exec.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace memlend;
using namespace memlend::platform;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace memlend {
// So that a failed check shows the code by its name.
inline std::ostream& boost_test_print_type(std::ostream& os, ErrorCode code) { return os << to_string(code); }
}  // namespace memlend

namespace {

struct Subreaper {
  Subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }
};
BOOST_TEST_GLOBAL_FIXTURE(Subreaper);

const std::string good_telemetry = R"({
  "version": 1,
  "host": {"name": "node-a", "memory_mib": 65536, "available_mib": 20000, "cpus": 16, "cpu_mhz": 40000,
           "memory_pressure_some": 1.5, "future_key": {"ignored": true}},
  "vms": [
    {"name": "vm-b", "memory_mib": 4096, "vcpus": 2, "plugged_mib": 512, "pluggable_mib": 8192,
     "guest_available_mib": 1200, "swap_in": 18446744073709551615, "cpu_s": 12.5},
    {"name": "vm-a", "running": false, "memory_mib": 2048, "vcpus": 1, "plugged_mib": 0, "pluggable_mib": 0}
  ]
})";

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

bool one_printable_line(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return !s.empty();
}

// Every error is one printable line, whatever the hook printed.
template <class T>
void expect_error(const Expected<T>& r, ErrorCode code, const std::string& message) {
  BOOST_TEST_REQUIRE(!r);
  BOOST_TEST(r.error().code == code);
  BOOST_TEST(r.error().message == message);
  BOOST_TEST(one_printable_line(r.error().message));
}

// A directory of hooks, and beside it one the hooks write into.
struct Hooks {
  Hooks() {
    std::string pattern = (fs::temp_directory_path() / "memlend-exec-XXXXXX").string();
    BOOST_TEST_REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    root = pattern;
    dir = root / "hooks";
    out = root / "out";
    fs::create_directory(dir);
    fs::create_directory(out);
    fs::permissions(dir, fs::perms(0755));
  }
  ~Hooks() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }

  // `body` runs under /bin/sh; $OUT is where it may write.
  void hook(const std::string& name, const std::string& body, mode_t mode = 0755) {
    fs::path p = dir / name;
    {
      std::ofstream f(p, std::ios::trunc);
      f << "#!/bin/sh\nOUT='" << out.string() << "'\n" << body << "\n";
    }
    BOOST_TEST_REQUIRE(::chmod(p.c_str(), mode) == 0);
  }

  void telemetry(const std::string& json) { hook("telemetry", "cat <<'JSON'\n" + json + "\nJSON"); }

  std::unique_ptr<NodePlatform> platform(ExecOptions o = {}) {
    o.hooks_dir = dir.string();
    auto p = make_exec(o);
    BOOST_TEST_REQUIRE(static_cast<bool>(p), (p ? "" : p.error().message));
    return std::move(*p);
  }

  std::string written(const std::string& name) { return slurp(out / name); }
  bool wrote(const std::string& name) { return fs::exists(out / name); }

  // The process group a hook recorded as `echo $$ > $OUT/NAME`: whatever of it
  // outlived its leader was reparented here; once those are reaped, nothing of
  // the group may be left.
  void group_is_gone(const std::string& pid_file) {
    BOOST_TEST_REQUIRE(wrote(pid_file));
    pid_t group = std::stoi(written(pid_file));
    int status = 0;
    while (::waitpid(-group, &status, 0) > 0) {
    }
    BOOST_TEST(::kill(-group, 0) == -1);
    BOOST_TEST(errno == ESRCH);
  }

  fs::path root, dir, out;
};

LentMemory lent() { return LentMemory{"lease-17", "node-b", "10.0.0.2:7000", 512}; }

int open_fds() {
  int n = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(telemetry_is_read_into_a_node_reading) {
  Hooks h;
  h.telemetry(good_telemetry);
  auto r = h.platform()->read();
  BOOST_TEST_REQUIRE(static_cast<bool>(r), (r ? "" : r.error().message));
  BOOST_TEST(r->host.name == "node-a");
  BOOST_TEST(r->host.memory_mib == 65536);
  BOOST_TEST(r->host.available_mib == 20000);
  BOOST_TEST(r->host.cpus == 16);
  BOOST_TEST(r->host.cpu_mhz == 40000);
  BOOST_TEST(r->host.memory_pressure_some.value_or(-1) == 1.5);
  BOOST_TEST(!r->host.cpu_pressure_some);
  BOOST_TEST_REQUIRE(r->vms.size() == 2u);
  BOOST_TEST(r->vms[0].name == "vm-a");  // sorted by name
  BOOST_TEST(!r->vms[0].running);
  BOOST_TEST(r->vms[1].name == "vm-b");
  BOOST_TEST(r->vms[1].running);
  BOOST_TEST(r->vms[1].plugged_mib == 512);
  BOOST_TEST(r->vms[1].pluggable_mib == 8192);
  BOOST_TEST(r->vms[1].guest_available_mib.value_or(-1) == 1200);
  BOOST_TEST(*r->vms[1].swap_in == 18446744073709551615ull);
  BOOST_TEST(r->vms[1].cpu_s.value_or(-1) == 12.5);
  BOOST_TEST(!r->vms[1].balloon_mib);
}

BOOST_AUTO_TEST_CASE(actions_get_their_arguments) {
  Hooks h;
  for (const char* verb : {"attach", "detach", "migrate", "balloon"})
    h.hook(verb, std::string("printf '%s\\n' \"$#\" \"$@\" > \"$OUT/") + verb + "\"\necho done");
  auto p = h.platform();
  BOOST_TEST(static_cast<bool>(p->attach("vm-a", lent())));
  BOOST_TEST(static_cast<bool>(p->detach("vm-a", LentMemory{"lease-18", "node-c", "", 64})));
  BOOST_TEST(static_cast<bool>(p->migrate("vm-a", MigrationTarget{"node-d", "tcp:10.0.0.4:4444"})));
  BOOST_TEST(static_cast<bool>(p->set_balloon("vm-a", 0)));
  BOOST_TEST(lines(h.written("attach")) ==
                 (std::vector<std::string>{"5", "vm-a", "lease-17", "node-b", "10.0.0.2:7000", "512"}),
             boost::test_tools::per_element());
  // An empty address is still an argument, so that the positions hold.
  BOOST_TEST(lines(h.written("detach")) == (std::vector<std::string>{"5", "vm-a", "lease-18", "node-c", "", "64"}),
             boost::test_tools::per_element());
  BOOST_TEST(lines(h.written("migrate")) == (std::vector<std::string>{"3", "vm-a", "node-d", "tcp:10.0.0.4:4444"}),
             boost::test_tools::per_element());
  BOOST_TEST(lines(h.written("balloon")) == (std::vector<std::string>{"2", "vm-a", "0"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_hook_that_fails_is_a_refusal_with_its_reason) {
  Hooks h;
  h.hook("attach", "echo 'no room for vm-a on this node'\necho 'a second line'\nexit 3");
  h.hook("detach", "exit 1");
  h.hook("balloon", "printf 'bad\\033[31m red\\ttab\\377'\nexit 2");
  h.hook("migrate", "head -c 5000 /dev/zero | tr '\\0' x\nexit 4");
  auto p = h.platform();
  auto a = p->attach("vm-a", lent());
  expect_error(a, ErrorCode::refused, "exec hook attach refused: exit status 3: no room for vm-a on this node");
  auto d = p->detach("vm-a", lent());
  expect_error(d, ErrorCode::refused, "exec hook detach refused: exit status 1: it gave no reason");
  auto b = p->set_balloon("vm-a", 100);
  expect_error(b, ErrorCode::refused, "exec hook balloon refused: exit status 2: bad\\x1b[31m red\\ttab\\xff");
  auto m = p->migrate("vm-a", MigrationTarget{"node-b", "tcp:node-b:4444"});
  BOOST_TEST_REQUIRE(!m);
  BOOST_TEST(m.error().code == ErrorCode::refused);
  BOOST_TEST(m.error().message.size() < 300u);
  BOOST_TEST(m.error().message.find("xxx...") != std::string::npos);
  BOOST_TEST(one_printable_line(m.error().message));
}

BOOST_AUTO_TEST_CASE(a_hook_that_hangs_is_killed_with_its_whole_group_at_the_deadline) {
  Hooks h;
  // A child of its own that would outlive a kill of the hook alone.
  h.hook("migrate", "echo $$ > \"$OUT/pid\"\nsleep 1000 &\nsleep 1000\nwait");
  ExecOptions o;
  o.migrate_timeout = 300ms;
  int fds = open_fds();
  auto r = h.platform(o)->migrate("vm-a", MigrationTarget{"node-b", "tcp:node-b:4444"});
  expect_error(r, ErrorCode::timed_out, "exec hook migrate: no answer within 300 ms: killed");
  h.group_is_gone("pid");
  BOOST_TEST(open_fds() == fds);
}

BOOST_AUTO_TEST_CASE(what_a_hook_leaves_running_ends_when_it_answers) {
  Hooks h;
  // The straggler keeps the hook's stdout: without the group's end, the read
  // would last until the timeout.
  h.hook("attach", "echo $$ > \"$OUT/pid\"\nsleep 1000 &\necho attached\nexit 0");
  auto r = h.platform()->attach("vm-a", lent());
  BOOST_TEST(static_cast<bool>(r), (r ? "" : r.error().message));
  h.group_is_gone("pid");
}

BOOST_AUTO_TEST_CASE(a_hook_that_prints_too_much_is_cut_and_refused) {
  Hooks h;
  h.hook("telemetry", "echo $$ > \"$OUT/pid\"\nexec yes");
  h.hook("attach", "echo $$ > \"$OUT/pid-attach\"\nyes no\nexit 0");
  ExecOptions o;
  o.max_output = 64 * 1024;
  auto p = h.platform(o);
  auto r = p->read();
  expect_error(r, ErrorCode::refused, "exec hook telemetry: printed more than 65536 bytes: killed, and refused");
  h.group_is_gone("pid");
  auto a = p->attach("vm-a", lent());
  expect_error(a, ErrorCode::refused, "exec hook attach: printed more than 65536 bytes: killed, and refused");
  h.group_is_gone("pid-attach");
}

BOOST_AUTO_TEST_CASE(telemetry_that_is_not_the_schema_names_what_is_wrong) {
  Hooks h;
  auto p = h.platform();
  h.telemetry("this is not json");
  auto r = p->read();
  BOOST_TEST_REQUIRE(!r);
  BOOST_TEST(r.error().code == ErrorCode::invalid_input);
  BOOST_TEST(r.error().message.rfind("telemetry: not JSON at byte ", 0) == 0, r.error().message);

  h.hook("telemetry", "exit 0");
  r = p->read();
  expect_error(r, ErrorCode::invalid_input, "telemetry: printed nothing (one JSON document expected)");

  h.telemetry(R"({"version": 1, "host": {"name": "n", "memory_mib": 8, "available_mib": 4, "cpus": 1,
    "cpu_mhz": 1}, "vms": [{"name": "a", "memory_mib": 1, "vcpus": 1, "plugged_mib": 0, "pluggable_mib": 0},
    {"name": "b", "memory_mib": 1, "vcpus": 1, "plugged_mib": 0, "pluggable_mib": 0},
    {"name": "c", "memory_mib": -5, "vcpus": 1, "plugged_mib": 0, "pluggable_mib": 0}]})");
  r = p->read();
  expect_error(r, ErrorCode::invalid_input, "telemetry: vms[2].memory_mib: not a non-negative integer");

  h.telemetry(R"({"version": 2, "host": {}, "vms": []})");
  r = p->read();
  expect_error(r, ErrorCode::refused, "telemetry: version 2 is not one this memlend reads (it reads version 1)");

  h.hook("telemetry", "echo 'firmware busy'\nexit 75");
  r = p->read();
  expect_error(r, ErrorCode::unavailable, "exec hook telemetry: exit status 75: firmware busy");
}

BOOST_AUTO_TEST_CASE(a_hook_killed_by_a_signal_did_not_answer) {
  Hooks h;
  h.hook("attach", "echo 'half way'\nkill -TERM $$");
  h.hook("telemetry", "kill -KILL $$");
  auto p = h.platform();
  auto a = p->attach("vm-a", lent());
  expect_error(a, ErrorCode::failed, "exec hook attach: killed by signal 15 (SIGTERM): half way");
  auto r = p->read();
  expect_error(r, ErrorCode::unavailable, "exec hook telemetry: killed by signal 9 (SIGKILL): it gave no reason");
}

BOOST_AUTO_TEST_CASE(a_missing_or_unrunnable_hook_is_unavailable) {
  Hooks h;
  h.hook("detach", "exit 0", 0644);
  auto p = h.platform();
  auto m = p->migrate("vm-a", MigrationTarget{"node-b", ""});
  expect_error(m, ErrorCode::unavailable, "exec hook migrate ('" + (h.dir / "migrate").string() + "'): no such hook");
  auto d = p->detach("vm-a", lent());
  BOOST_TEST_REQUIRE(!d);
  BOOST_TEST(d.error().code == ErrorCode::unavailable);
  BOOST_TEST(d.error().message.find("not executable") != std::string::npos, d.error().message);
}

BOOST_AUTO_TEST_CASE(hooks_others_could_change_are_not_run) {
  Hooks h;
  h.hook("attach", "echo ran > \"$OUT/ran\"", 0777);
  h.hook("detach", "echo ran > \"$OUT/ran\"", 0775);
  auto p = h.platform();
  auto a = p->attach("vm-a", lent());
  BOOST_TEST_REQUIRE(!a);
  BOOST_TEST(a.error().code == ErrorCode::invalid_input);
  BOOST_TEST(a.error().message.find("writable by its group or by others (mode 0777): not run") != std::string::npos,
             a.error().message);
  BOOST_TEST(!p->detach("vm-a", lent()));
  if (::geteuid() == 0) {
    h.hook("balloon", "echo ran > \"$OUT/ran\"");
    BOOST_TEST_REQUIRE(::chown((h.dir / "balloon").c_str(), 65534, 65534) == 0);
    auto b = p->set_balloon("vm-a", 1);
    BOOST_TEST_REQUIRE(!b);
    BOOST_TEST(b.error().message.find("owned by uid 65534, neither root nor") != std::string::npos,
               b.error().message);
  }
  BOOST_TEST(!h.wrote("ran"));

  // The directory too, whether it was so from the start or became so later.
  h.hook("migrate", "echo ran > \"$OUT/ran\"");
  fs::permissions(h.dir, fs::perms(0777));
  auto m = p->migrate("vm-a", MigrationTarget{"node-b", ""});
  BOOST_TEST_REQUIRE(!m);
  BOOST_TEST(m.error().code == ErrorCode::invalid_input);
  ExecOptions o;
  o.hooks_dir = h.dir.string();
  auto made = make_exec(o);
  BOOST_TEST_REQUIRE(!made);
  BOOST_TEST(made.error().code == ErrorCode::invalid_input);
  BOOST_TEST(made.error().message.find("writable by its group or by others") != std::string::npos);
  BOOST_TEST(!h.wrote("ran"));

  o.hooks_dir = "relative/hooks";
  BOOST_TEST(!make_exec(o));
  o.hooks_dir = (h.root / "nowhere").string();
  BOOST_TEST(!make_exec(o));
}

BOOST_AUTO_TEST_CASE(a_hook_gets_a_clean_environment_and_no_descriptors_of_ours) {
  Hooks h;
  ::setenv("MEMLEND_EXEC_TEST_SECRET", "hunter2", 1);
  int leaky = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC, as a careless library would
  BOOST_TEST_REQUIRE(leaky > 2);
  h.hook("balloon", "env > \"$OUT/env\"\npwd > \"$OUT/cwd\"\nreadlink /proc/$$/fd/0 > \"$OUT/stdin\"\n"
                    "if [ -e /proc/$$/fd/" + std::to_string(leaky) + " ]; then echo leaked; exit 1; fi");
  int fds = open_fds();
  auto r = h.platform()->set_balloon("vm-a", 1024);
  BOOST_TEST(static_cast<bool>(r), (r ? "" : r.error().message));
  BOOST_TEST(open_fds() == fds);
  ::close(leaky);
  ::unsetenv("MEMLEND_EXEC_TEST_SECRET");
  std::string env = h.written("env");
  BOOST_TEST(env.find("hunter2") == std::string::npos);
  BOOST_TEST(env.find("PATH=/usr/sbin:/usr/bin:/sbin:/bin") != std::string::npos, env);
  BOOST_TEST(h.written("cwd") == "/\n");
  BOOST_TEST(h.written("stdin") == "/dev/null\n");
}

BOOST_AUTO_TEST_CASE(arguments_a_hook_could_misread_are_refused_before_it_runs) {
  Hooks h;
  for (const char* verb : {"attach", "migrate", "balloon"}) h.hook(verb, "echo ran > \"$OUT/ran\"");
  auto p = h.platform();
  auto a = p->attach("-rf", lent());
  expect_error(a, ErrorCode::invalid_input, "exec hook attach: the VM's name '-rf': starts with '-'");
  BOOST_TEST(!p->attach("vm\nx", lent()));
  BOOST_TEST(!p->attach("", lent()));
  BOOST_TEST(!p->attach("vm-a", LentMemory{"lease", "node-b", "", 0}));
  BOOST_TEST(!p->migrate("vm-a", MigrationTarget{"", "tcp:x"}));
  BOOST_TEST(!p->set_balloon("vm-a", -1));
  BOOST_TEST(!h.wrote("ran"));
}

// The parser alone, on what no hook in the cases above printed.
BOOST_AUTO_TEST_CASE(the_parser_names_the_key_and_the_problem) {
  const std::string host = R"("host": {"name": "n", "memory_mib": 8, "available_mib": 4, "cpus": 1, "cpu_mhz": 1})";
  const std::string vm = R"({"name": "a", "memory_mib": 1, "vcpus": 1, "plugged_mib": 0, "pluggable_mib": 4})";
  auto doc = [&](const std::string& host_part, const std::string& vms) {
    return "{\"version\": 1, " + host_part + ", \"vms\": [" + vms + "]}";
  };
  BOOST_TEST(static_cast<bool>(parse_exec_telemetry(doc(host, vm))));
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[]", "telemetry: not a JSON object"},
      {R"({"host": {}, "vms": []})", "telemetry: version: missing"},
      {R"({"version": "1"})", "telemetry: version: not an integer"},
      {R"({"version": 1, "vms": []})", "telemetry: host: missing"},
      {R"({"version": 1, )" + host + "}", "telemetry: vms: missing"},
      {R"({"version": 1, )" + host + R"(, "vms": {}})", "telemetry: vms: not a list"},
      {doc(R"("host": [])", vm), "telemetry: host: not an object"},
      {doc(R"("host": {"name": "n", "memory_mib": 8, "available_mib": 9, "cpus": 1, "cpu_mhz": 1})", vm),
       "telemetry: host.available_mib: 9 is more than host.memory_mib (8)"},
      {doc(R"("host": {"name": "n", "memory_mib": 8, "available_mib": 4, "cpus": 0, "cpu_mhz": 1})", vm),
       "telemetry: host.cpus: less than 1"},
      {doc(R"("host": {"name": 7, "memory_mib": 8, "available_mib": 4, "cpus": 1, "cpu_mhz": 1})", vm),
       "telemetry: host.name: not a string"},
      {doc(R"("host": {"memory_mib": 8, "available_mib": 4, "cpus": 1, "cpu_mhz": 1})", vm),
       "telemetry: host.name: missing"},
      {doc(R"("host": {"name": "n", "memory_mib": 8.5, "available_mib": 4, "cpus": 1, "cpu_mhz": 1})", vm),
       "telemetry: host.memory_mib: not a non-negative integer"},
      {doc(R"("host": {"name": "n", "memory_mib": 2000000000000, "available_mib": 4, "cpus": 1, "cpu_mhz": 1})", vm),
       "telemetry: host.memory_mib: more than 1099511627776"},
      {doc(R"("host": {"name": "n", "memory_mib": 8, "available_mib": 4, "cpus": 1, "cpu_mhz": 1,
               "cpu_pressure_some": 101})",
           vm),
       "telemetry: host.cpu_pressure_some: more than 100"},
      {doc(R"("host": {"name": "n", "memory_mib": 8, "available_mib": 4, "cpus": 1, "cpu_mhz": 1,
               "cpu_busy_s": -1})",
           vm),
       "telemetry: host.cpu_busy_s: not a non-negative number"},
      {doc(host, vm + ", 3"), "telemetry: vms[1]: not an object"},
      {doc(host, vm + ", " + vm), "telemetry: vms[1].name: 'a' again (also vms[0])"},
      {doc(host, R"({"name": "x\u0007y", "memory_mib": 1, "vcpus": 1, "plugged_mib": 0, "pluggable_mib": 4})"),
       "telemetry: vms[0].name: 'x\\x07y': holds a control character"},
      {doc(host, R"({"name": "a", "memory_mib": 1, "vcpus": 1, "plugged_mib": 8, "pluggable_mib": 4})"),
       "telemetry: vms[0].plugged_mib: 8 is more than vms[0].pluggable_mib (4)"},
      {doc(host, R"({"name": "a", "running": 1, "memory_mib": 1, "vcpus": 1, "plugged_mib": 0, "pluggable_mib": 4})"),
       "telemetry: vms[0].running: not true or false"},
      {doc(host, R"({"name": "a", "memory_mib": 1, "plugged_mib": 0, "pluggable_mib": 4})"),
       "telemetry: vms[0].vcpus: missing"},
      {doc(host, vm) + " trailing",
       "telemetry: not JSON at byte 194: syntax error while parsing value - invalid literal"},
      {R"({"version": 1e400})", "telemetry: not JSON: number overflow parsing '1e400'"},
      {std::string("{\"version\": 1}\0", 15), "telemetry: not JSON: a NUL byte at byte 14"},
      {"{\"version\": 1, \"deep\": " + std::string(40, '[') + std::string(40, ']') + "}",
       "telemetry: nested deeper than 16 levels"},
  };
  for (const auto& [text, message] : cases) {
    auto r = parse_exec_telemetry(text);
    BOOST_TEST_REQUIRE(!r, text);
    BOOST_TEST(r.error().message == message, text);
  }
}
