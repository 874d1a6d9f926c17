#define BOOST_TEST_MODULE cli_run
#include <boost/test/unit_test.hpp>

#include "tests/support/child.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <sys/stat.h>

using memlend::test::make_temp_dir;
using memlend::test::run_process;

namespace {

const std::string bin = MEMLEND_BINARY;

struct TempDir {
  std::string path = make_temp_dir("cli");
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

std::vector<nlohmann::json> read_events(const std::string& file) {
  std::ifstream in(file);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// One line, naming what is wrong, and exit status 2.
void expect_bad_input(const std::vector<std::string>& args, const std::string& names) {
  std::vector<std::string> argv{bin};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_process(argv, 30);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.out.empty());
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  BOOST_TEST(r.err.find(names) != std::string::npos, "stderr \"" << r.err << "\" names " << names);
}

// Bad input that must be refused at once (the wait is a bound, not a
// synchronisation): status 2 and exactly `line` on stderr.
void expect_refusal(const std::vector<std::string>& args, const std::string& workdir, const std::string& line) {
  std::vector<std::string> argv{bin};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_process(argv, 30, workdir);
  BOOST_TEST_REQUIRE(!r.timed_out, args.back());
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.out.empty());
  BOOST_TEST(r.err == "memlend: " + line + "\n");
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_demo_reaches_a_recommendation_within_twenty_minutes) {
  TempDir dir;
  std::string events = dir.path + "/events.jsonl";
  auto r = run_process({bin, "run", "--for", "1200s", "--speed", "200", "--events-out", events}, 120, dir.path);
  BOOST_TEST_REQUIRE(!r.timed_out);
  BOOST_TEST(r.status == 0);
  std::set<std::string> seen;
  double last = 0;
  for (const auto& e : read_events(events)) {
    seen.insert(e.at("event").get<std::string>());
    BOOST_TEST(e.at("t_s").get<double>() >= last - 1.0);  // roughly in time order
    last = e.at("t_s").get<double>();
    BOOST_TEST(e.at("t_s").get<double>() <= 1200.0);
  }
  for (const char* want : {"need_detected", "lease_granted", "mirror_created", "migration_recommended"})
    BOOST_TEST(seen.count(want) == 1u, "the demo's event log holds " << want);
  // The console says what happens, in lines a person reads.
  BOOST_TEST(r.out.find("B2 lends VM2 48 GiB over RDMA") != std::string::npos);
  BOOST_TEST(r.out.find("recommend migrating VM5 to B2") != std::string::npos);
  // The data path moved real bytes: every guest read back what it wrote,
  // VM4 across A3's death, the mirror and the re-homing to N3.
  for (const char* vm : {"VM2", "VM4", "VM5", "VM6"}) {
    auto at = r.out.find(std::string("the guest workload of ") + vm + " wrote");
    BOOST_TEST_REQUIRE(at != std::string::npos, vm << " moved no bytes:\n" << r.out);
    auto line = r.out.substr(at, r.out.find('\n', at) - at);
    BOOST_TEST(line.find(": 0 words wrong") != std::string::npos, line);
  }
  BOOST_TEST(r.out.find("has no data path") == std::string::npos, r.out);
}

BOOST_AUTO_TEST_CASE(dry_run_writes_no_lease) {
  TempDir dir;
  std::string events = dir.path + "/events.jsonl";
  auto r = run_process({bin, "run", "--for", "300", "--speed", "500", "--dry-run", "--events-out", events}, 60,
                       dir.path);
  BOOST_TEST(r.status == 0);
  for (const auto& e : read_events(events)) BOOST_TEST(e.at("event").get<std::string>() == "need_detected");
  BOOST_TEST(r.out.find("(dry run)") != std::string::npos);
  BOOST_TEST(std::filesystem::is_empty(dir.path + "/memlend-datastore"));
}

BOOST_AUTO_TEST_CASE(bad_flags_get_one_line_and_status_2) {
  expect_bad_input({"run", "--speed", "0"}, "--speed");
  expect_bad_input({"run", "--speed", "fast"}, "--speed");
  expect_bad_input({"run", "--for", "soon"}, "--for");
  expect_bad_input({"run", "--scenario", "/nonexistent/memlend.json"}, "/nonexistent/memlend.json");
  expect_bad_input({"run", "--events-out", "/nonexistent/dir/events"}, "--events-out");
  expect_bad_input({"run", "--bogus"}, "--bogus");
  expect_bad_input({"frobnicate"}, "frobnicate");
  expect_bad_input({"plan"}, "--scenario");
}

BOOST_AUTO_TEST_CASE(help_and_version) {
  auto help = run_process({bin, "run", "--help"}, 30);
  BOOST_TEST(help.status == 0);
  for (const char* flag : {"--scenario", "--for", "--speed", "--events-out", "--dry-run", "--datastore"})
    BOOST_TEST(help.out.find(flag) != std::string::npos, "--help mentions " << flag);
  auto version = run_process({bin, "version"}, 30);
  BOOST_TEST(version.status == 0);
  BOOST_TEST(version.out.rfind("memlend ", 0) == 0u);
}

BOOST_AUTO_TEST_CASE(show_scenario_prints_a_scenario_that_plans) {
  TempDir dir;
  auto shown = run_process({bin, "run", "--show-scenario"}, 30);
  BOOST_TEST_REQUIRE(shown.status == 0);
  std::string file = dir.path + "/demo.json";
  std::ofstream(file) << shown.out;
  auto plan = run_process({bin, "plan", "--scenario", file, "--json"}, 30);
  BOOST_TEST(plan.status == 0);
  auto j = nlohmann::json::parse(plan.out);
  BOOST_TEST(j.at("decisions").size() == 5u);
}

// The scenario is read once, from a regular file: --show-scenario streamed a
// FIFO or /dev/zero forever.
BOOST_AUTO_TEST_CASE(show_scenario_reads_only_a_regular_file) {
  TempDir dir;
  std::string fifo = dir.path + "/cluster.json";
  BOOST_TEST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  expect_refusal({"run", "--show-scenario", "--scenario", fifo}, dir.path,
                 fifo + ": is a FIFO; the scenario file must be a regular file");
  expect_refusal({"run", "--show-scenario", "--scenario", "/dev/zero"}, dir.path,
                 "/dev/zero: is a character device; the scenario file must be a regular file");
  std::string fig2 = std::string(MEMLEND_SOURCE_DIR) + "/examples/fig2.json";
  auto shown = run_process({bin, "run", "--show-scenario", "--scenario", fig2}, 30);
  BOOST_TEST(shown.status == 0);
  std::ifstream in(fig2);
  std::stringstream text;
  text << in.rdbuf();
  BOOST_TEST(shown.out == text.str());
}

// Secret files too: a FIFO named as one waited for a writer forever.
BOOST_AUTO_TEST_CASE(a_secret_file_must_be_a_regular_file) {
  TempDir dir;
  std::string fifo = dir.path + "/secret";
  BOOST_TEST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  expect_refusal({"run", "--no-db", "--metrics", "off", "--listen", "127.0.0.1:0", "--cluster", "c", "--tls-ca",
                  "/dev/null", "--tls-cert", "/dev/null", "--tls-key", "/dev/null", "--cluster-secret-file", fifo},
                 dir.path, "--cluster-secret-file: " + fifo + ": is a FIFO; the cluster secret must be a regular file");
  expect_refusal({"donor", "--listen", "127.0.0.1:0", "--pool-mib", "1", "--secret-file", fifo}, dir.path,
                 "--secret-file: " + fifo + ": is a FIFO; the secret file must be a regular file");
}

// memlend often runs as root: a symbolic link planted where the event log
// goes had its target truncated and filled.
BOOST_AUTO_TEST_CASE(events_out_does_not_follow_a_symbolic_link) {
  TempDir dir;
  std::string target = dir.path + "/precious";
  std::ofstream(target) << "not an event log\n";
  std::string link = dir.path + "/events.jsonl";
  std::filesystem::create_symlink(target, link);
  expect_refusal({"run", "--scenario", std::string(MEMLEND_SOURCE_DIR) + "/examples/fig2.json", "--for", "30",
                  "--no-db", "--data-path", "off", "--events-out", link},
                 dir.path, "--events-out: " + link + ": is a symbolic link; name the file itself");
  std::ifstream in(target);
  std::string kept;
  std::getline(in, kept);
  BOOST_TEST(kept == "not an event log");
  BOOST_TEST(std::filesystem::is_symlink(link));
  std::string fifo = dir.path + "/events.fifo";
  BOOST_TEST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  expect_refusal({"run", "--no-db", "--metrics", "off", "--events-out", fifo}, dir.path,
                 "--events-out: " + fifo + ": not a regular file; the event log is written to one");
}

// A block that is not a power of two, carried through the data path: the
// lease's region moves 768 KiB blocks through an 18 MiB buffer, and the
// guest reads back every word it wrote.
BOOST_AUTO_TEST_CASE(a_768_kib_block_carries_through_the_data_path) {
  TempDir dir;
  std::string file = dir.path + "/block.json";
  std::ofstream(file) << R"({
    "settings": { "page_size_kib": 2048, "rdma_block_kib": 768, "buffer_blocks": 3, "detect_samples": 1 },
    "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 32000 }, { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM2", "host": "A", "memory_mib": 65536, "cpu_mhz": 16000 } ] })";
  auto r = run_process({bin, "run", "--scenario", file, "--for", "60", "--speed", "20", "--no-db"}, 120, dir.path);
  BOOST_TEST_REQUIRE(!r.timed_out);
  BOOST_TEST(r.status == 0, r.err);
  BOOST_TEST(r.out.find("with a local buffer of 18432 KiB on A") != std::string::npos, r.out);
  auto at = r.out.find("the guest workload of VM2 wrote");
  BOOST_TEST_REQUIRE(at != std::string::npos, r.out);
  auto line = r.out.substr(at, r.out.find('\n', at) - at);
  BOOST_TEST(line.find(": 0 words wrong") != std::string::npos, line);
}

// inspect through the sim platform: one host of a scenario as a node sees it,
// its VM short by what the scenario says, and the demand with its reason.
BOOST_AUTO_TEST_CASE(inspect_shows_a_node_and_the_demand_it_infers) {
  const std::string fig2 = std::string(MEMLEND_SOURCE_DIR) + "/examples/fig2.json";
  auto r = run_process({bin, "inspect", "--platform", "sim", "--scenario", fig2, "--host", "A", "--interval", "0.05s",
                        "--json"},
                       60);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  auto j = nlohmann::json::parse(r.out);
  BOOST_TEST(j["backend"] == "sim");
  BOOST_TEST(j["host"]["name"] == "A");
  BOOST_TEST(j["host"]["memory_mib"] == 16384);
  BOOST_TEST_REQUIRE(j["vms"].size() == 1u);
  const auto& vm = j["vms"][0];
  BOOST_TEST(vm["name"] == "VM2");
  BOOST_TEST(vm["memory_mib"] == 16384);
  // Its host gives it all it has; its guest is out of memory and faulting,
  // so it wants one step more than it has (a real guest shows no more).
  BOOST_TEST(vm["demand"]["memory_mib"] == 16384 + 256);
  BOOST_TEST(vm["demand"]["reason"].get<std::string>().find("short 2 readings") != std::string::npos);

  auto text = run_process({bin, "inspect", "--platform", "sim", "--scenario", fig2, "--host", "B", "--interval", "0"},
                          60);
  BOOST_TEST_REQUIRE(text.status == 0, text.err);
  BOOST_TEST(text.out.find("host B (sim): 131072 MiB") != std::string::npos, text.out);
  BOOST_TEST(text.out.find("(no VMs)") != std::string::npos, text.out);
}

BOOST_AUTO_TEST_CASE(inspect_refuses_what_it_cannot_reach_in_one_line) {
  const std::string fig2 = std::string(MEMLEND_SOURCE_DIR) + "/examples/fig2.json";
  expect_bad_input({"inspect"}, "--platform: required");
  expect_bad_input({"inspect", "--platform", "xen"}, "--platform: 'xen'");
  expect_bad_input({"inspect", "--platform", "sim"}, "needs --scenario FILE and --host NAME");
  expect_bad_input({"inspect", "--platform", "sim", "--scenario", fig2, "--host", "Z"}, "no host named Z");
  expect_bad_input({"inspect", "--platform", "sim", "--scenario", fig2, "--host", "A", "--interval", "soon"},
                   "--interval");
}

BOOST_AUTO_TEST_CASE(version_as_a_flag_and_as_a_command_say_the_same) {
  auto flag = run_process({bin, "--version"}, 30);
  auto command = run_process({bin, "version"}, 30);
  BOOST_TEST(flag.status == 0);
  BOOST_TEST(command.status == 0);
  BOOST_TEST(flag.out.rfind("memlend ", 0) == 0, flag.out);
  BOOST_TEST(flag.out == command.out);
}

// inspect through libvirt's own test driver (the real library, a fake
// hypervisor in the process) and through a vendor's hooks.
BOOST_AUTO_TEST_CASE(inspect_reads_libvirt_and_vendor_hooks) {
  auto lv = run_process({bin, "inspect", "--platform", "libvirt", "--libvirt-uri", "test:///default", "--interval",
                         "0.05s", "--json"},
                        60);
  BOOST_TEST_REQUIRE(lv.status == 0, lv.err);
  auto j = nlohmann::json::parse(lv.out);
  BOOST_TEST(j["backend"] == "libvirt");
  BOOST_TEST_REQUIRE(j["vms"].size() == 1u, lv.out);
  BOOST_TEST(j["vms"][0]["name"] == "test");
  BOOST_TEST(j["vms"][0]["demand"]["memory_mib"] == j["vms"][0]["memory_mib"]);

  TempDir dir;
  std::string hooks = dir.path + "/hooks";
  std::filesystem::create_directory(hooks);
  ::chmod(hooks.c_str(), 0755);
  std::ofstream(hooks + "/telemetry")
      << "#!/bin/sh\n"
         "echo '{\"version\": 1, \"host\": {\"name\": \"pve-1\", \"memory_mib\": 65536, \"available_mib\": 1024,"
         " \"cpus\": 8, \"cpu_mhz\": 16000}, \"vms\": [{\"name\": \"101\", \"memory_mib\": 4096, \"vcpus\": 2,"
         " \"plugged_mib\": 0, \"pluggable_mib\": 8192, \"guest_available_mib\": 50, \"major_faults\": 0}]}'\n";
  ::chmod((hooks + "/telemetry").c_str(), 0755);
  auto ex = run_process({bin, "inspect", "--platform", "exec", "--hooks-dir", hooks, "--interval", "0.05s"}, 60);
  BOOST_TEST_REQUIRE(ex.status == 0, ex.err);
  BOOST_TEST(ex.out.find("host pve-1 (exec): 65536 MiB, 1024 MiB available") != std::string::npos, ex.out);
  // 50 MiB available is under half the margin: short, one step more.
  BOOST_TEST(ex.out.find("101: guest has 50 MiB available") != std::string::npos, ex.out);
  BOOST_TEST(ex.out.find("wants 4352 MiB (has 4096)") != std::string::npos, ex.out);

  // Garbage from the hook, a hook dir anyone may write, an unreachable libvirt: one line, exit 2.
  std::ofstream(hooks + "/telemetry") << "#!/bin/sh\necho not json\n";
  expect_bad_input({"inspect", "--platform", "exec", "--hooks-dir", hooks}, "inspect: exec: telemetry: not JSON");
  ::chmod(hooks.c_str(), 0777);
  expect_bad_input({"inspect", "--platform", "exec", "--hooks-dir", hooks}, "--hooks-dir " + hooks);
  expect_bad_input({"inspect", "--platform", "libvirt", "--libvirt-uri", "qemu+unix:///system?socket=/nonexistent"},
                   "cannot connect");
  expect_bad_input({"inspect", "--platform", "qemu", "--qmp-dir", dir.path + "/none"}, "inspect: qemu:");
}

// One config file and one habit serve every command.
BOOST_AUTO_TEST_CASE(every_command_takes_config_and_log_level) {
  for (const char* command :
       {"plan", "run", "state", "why", "agent", "donor", "probe", "mount", "inspect", "support-bundle"}) {
    auto help = run_process({bin, command, "--help"}, 30);
    BOOST_TEST(help.status == 0, command);
    BOOST_TEST(help.out.find("--config") != std::string::npos, command);
    BOOST_TEST(help.out.find("--log-level") != std::string::npos, command);
  }
  TempDir dir;
  const std::string fig2 = std::string(MEMLEND_SOURCE_DIR) + "/examples/fig2.json";
  auto ran = run_process({bin, "run", "--scenario", fig2, "--for", "30", "--speed", "100", "--quiet", "--metrics", "off",
                          "--data-path", "off", "--db", dir.path + "/kept.db", "--datastore", dir.path + "/ds"},
                         120);
  BOOST_TEST_REQUIRE(ran.status == 0, ran.err);
  // The service's file: state takes its db and skips the keys of run.
  std::ofstream(dir.path + "/memlend.conf") << "db = \"" << dir.path << "/kept.db\"\nmetrics = \"off\"\n"
                                            << "log-level = \"error\"\n";
  auto state = run_process({bin, "state", "--config", dir.path + "/memlend.conf", "--json"}, 60);
  BOOST_TEST_REQUIRE(state.status == 0, state.err);
  BOOST_TEST(nlohmann::json::parse(state.out)["hosts"].size() == 3u);
  std::ofstream(dir.path + "/bad.conf") << "no-such-key = 1\n";
  expect_bad_input({"donor", "--config", dir.path + "/bad.conf", "--listen", "127.0.0.1:0", "--pool-mib", "4",
                    "--insecure-test-bench"},
                   "unknown key");
}
