#define BOOST_TEST_MODULE cli_config_file
#include <boost/test/unit_test.hpp>

#include "cli/config_file.hpp"
#include "cli/logging.hpp"
#include "tests/support/child.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <sys/stat.h>
#include <fstream>
#include <sstream>

using namespace memlend;
using memlend::test::make_temp_dir;
using memlend::test::run_process;

namespace {

const std::string bin = MEMLEND_BINARY;
const std::string fig2 = std::string(MEMLEND_SOURCE_DIR) + "/examples/fig2.json";

struct TempDir {
  std::string path = make_temp_dir("config");
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path + "/" + name) << text;
    return path + "/" + name;
  }
};

// A command shaped like run, beside another command, as in memlend.
struct Commands {
  CLI::App app{"test"};
  CLI::App* run = app.add_subcommand("run");
  CLI::App* other = app.add_subcommand("agent");
  std::string scenario, events_out, other_only;
  cli::LogFlags log;
  double speed = 0;
  bool dry_run = false;
  CLI::Option* speed_opt;
  Commands() {
    run->add_option("--scenario", scenario);
    run->add_option("--events-out", events_out);
    speed_opt = run->add_option("--speed", speed)->check(CLI::PositiveNumber);
    run->add_flag("--dry-run", dry_run);
    cli::add_log_flags(run, log, "info");
    other->add_option("--controller", other_only);
  }
  void parse(std::vector<std::string> args) {
    std::reverse(args.begin(), args.end());
    app.parse(args);
  }
};

std::string error_of(Commands& c, const std::string& file) {
  auto e = cli::apply_config_file(*c.run, file);
  return e ? e->message : std::string();
}

}  // namespace

BOOST_AUTO_TEST_CASE(keys_set_the_options_the_command_line_left_unset) {
  TempDir dir;
  auto file = dir.write("memlend.conf",
                        "# comments and blank lines are skipped\n\n"
                        "scenario = \"/srv/a b.json\"   # a quoted value keeps its spaces\n"
                        "events-out = '/var/log/x.jsonl'\n"
                        "speed = 2.5\n"
                        "dry-run = true\n"
                        "log-level = debug\n"
                        "log-format = json\n"
                        "controller = 10.0.0.1:4000\n");  // another command's key: skipped
  Commands c;
  c.parse({"run", "--speed", "4"});
  BOOST_TEST(error_of(c, file) == "");
  BOOST_TEST(c.scenario == "/srv/a b.json");
  BOOST_TEST(c.events_out == "/var/log/x.jsonl");
  BOOST_TEST(c.speed == 4);  // the command line wins
  BOOST_TEST(c.dry_run);
  BOOST_TEST(c.log.level == "debug");
  BOOST_TEST(c.log.format == "json");
  BOOST_TEST(c.other_only == "");
}

BOOST_AUTO_TEST_CASE(a_false_flag_is_the_same_as_no_flag) {
  TempDir dir;
  Commands c;
  c.parse({"run"});
  BOOST_TEST(error_of(c, dir.write("f.conf", "dry-run = false\n")) == "");
  BOOST_TEST(!c.dry_run);
  BOOST_TEST(c.run->get_option("--dry-run")->count() == 0u);
}

BOOST_AUTO_TEST_CASE(every_error_names_the_file_the_line_and_the_key) {
  TempDir dir;
  struct Case {
    std::string text, expected;
  };
  std::vector<Case> cases{
      {"speed = 1\nspeeed = 2\n", ":2: unknown key speeed (memlend run takes: scenario, events-out, speed, dry-run, log-level, log-format)"},
      {"events_out = x\n", ":1: unknown key events_out (did you mean events-out?)"},
      {"speed = fast\n", ":1: key speed: bad value \"fast\": "},
      {"speed = -1\n", ":1: key speed: bad value \"-1\": "},
      {"log-level = loud\n", ":1: key log-level: bad value \"loud\": "},
      {"log-format = xml\n", ":1: key log-format: bad value \"xml\": "},
      {"dry-run = yes\n", ":1: key dry-run: bad value \"yes\": a flag is true or false"},
      {"speed = 1\nspeed = 2\n", ":2: key speed is set twice (first on line 1)"},
      {"scenario\n", ":1: expected key = value, found \"scenario\""},
      {"scenario =\n", ":1: key scenario: no value after '='"},
      {"scenario = \"a.json\n", ":1: key scenario: the value has no closing \""},
      {"[run]\n", ":1: sections are not used"},
      {"config = other.conf\n", ":1: unknown key config"},
      {"Speed = 1\n", ":1: \"Speed\" is not a key"},
  };
  for (const auto& k : cases) {
    Commands c;
    c.parse({"run"});
    auto file = dir.write("bad.conf", k.text);
    std::string err = error_of(c, file);
    BOOST_TEST(err.rfind(file + k.expected, 0) == 0u, "for \"" << k.text << "\": " << err);
  }
  Commands c;
  c.parse({"run"});
  BOOST_TEST(error_of(c, dir.path + "/missing.conf") ==
             dir.path + "/missing.conf: cannot open the config file (No such file or directory)");
}

// What fuzz_config found: a quoted "\n" in a bad value made the message two
// lines. The parser's messages are one printable line where they are made.
BOOST_AUTO_TEST_CASE(an_escaped_newline_in_a_value_stays_on_one_line) {
  TempDir dir;
  Commands c;
  c.parse({"run"});
  auto file = dir.write("nl.conf", std::string("# .\0VE\xe3\xa4nal.c\nlog-level= \"\\npem\"\n", 33));
  std::string err = error_of(c, file);
  BOOST_TEST(err.rfind(file + ":2: key log-level: bad value \"\\npem\": ", 0) == 0u, err);
  BOOST_TEST(std::none_of(err.begin(), err.end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; }), err);
}

// A 2 MB value is not echoed (twice: CLI11 repeats it) into a 4 MB line.
BOOST_AUTO_TEST_CASE(a_long_value_is_echoed_as_a_prefix) {
  TempDir dir;
  Commands c;
  c.parse({"run"});
  std::string err = error_of(c, dir.write("long.conf", "speed = " + std::string(900000, '9') + "x\n"));
  BOOST_TEST(err.rfind(dir.path + "/long.conf:1: key speed: bad value \"999", 0) == 0u, err.substr(0, 300));
  BOOST_TEST(err.find("(900001 bytes)") != std::string::npos, err.substr(0, 300));
  BOOST_TEST(err.size() < 600u, err.substr(0, 600));
  Commands k;
  k.parse({"run"});
  err = error_of(k, dir.write("key.conf", std::string(900000, 'k') + " = 1\n"));
  BOOST_TEST(err.size() < 600u, err.substr(0, 600));
}

// A config file is a regular file of at most 1 MiB; /dev/zero took 1 GB and
// a FIFO waited for a writer forever.
BOOST_AUTO_TEST_CASE(only_a_regular_file_of_at_most_1_mib_is_read, *boost::unit_test::timeout(60)) {
  TempDir dir;
  Commands c;
  c.parse({"run"});
  BOOST_TEST(error_of(c, "/dev/zero") == "/dev/zero: is a character device; the config file must be a regular file");
  std::string fifo = dir.path + "/memlend.conf";
  BOOST_TEST_REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  BOOST_TEST(error_of(c, fifo) == fifo + ": is a FIFO; the config file must be a regular file");
  std::string big = dir.write("big.conf", "# " + std::string((1 << 20) - 3, 'x') + "\n");
  BOOST_TEST(error_of(c, big) == "");
  big = dir.write("big.conf", "# " + std::string((1 << 20) - 2, 'x') + "\n");
  BOOST_TEST(error_of(c, big) == big + ": is larger than the 1 MiB a config file may hold");

  // Through the binary: status 2 and one line, at once.
  auto r = run_process({bin, "plan", "--scenario", fig2, "--config", "/dev/zero"}, 30);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.err == "memlend: /dev/zero: is a character device; the config file must be a regular file\n");
  r = run_process({bin, "plan", "--scenario", fig2, "--config", fifo}, 30);
  BOOST_TEST(!r.timed_out);
  BOOST_TEST(r.status == 2);
}

// The same through the binary: plan takes --config.
BOOST_AUTO_TEST_CASE(plan_reads_its_options_from_a_config_file) {
  TempDir dir;
  auto file = dir.write("memlend.conf", "scenario = \"" + fig2 + "\"\njson = true\nlisten = 127.0.0.1:4000\n");
  auto r = run_process({bin, "plan", "--config", file}, 30);
  BOOST_TEST(r.status == 0, r.err);
  BOOST_TEST(r.err == "");  // plan is quiet by default
  auto j = nlohmann::json::parse(r.out);
  BOOST_TEST(j["decisions"][0]["kind"] == "remote_memory");

  // A value is echoed as printable text: an escape sequence in the file does not reach the terminal.
  auto esc = dir.write("esc.conf", "json = \"\x1b[31mred\"\n");
  r = run_process({bin, "plan", "--config", esc}, 30);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.err == "memlend: " + esc + ":1: key json: bad value \"\\x1b[31mred\": a flag is true or false\n");

  auto bad = dir.write("bad.conf", "scenario = \"" + fig2 + "\"\njson = maybe\n");
  r = run_process({bin, "plan", "--config", bad}, 30);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.out == "");
  BOOST_TEST(r.err == "memlend: " + bad + ":2: key json: bad value \"maybe\": a flag is true or false\n");
}

BOOST_AUTO_TEST_CASE(plan_logs_one_line_per_event_at_the_level_asked) {
  auto quiet = run_process({bin, "plan", "--scenario", fig2}, 30);
  BOOST_TEST(quiet.status == 0);
  BOOST_TEST(quiet.err == "");
  auto loud = run_process({bin, "plan", "--scenario", fig2, "--log-level", "debug"}, 30);
  BOOST_TEST(loud.status == 0);
  BOOST_TEST(std::count(loud.err.begin(), loud.err.end(), '\n') == 2);
  BOOST_TEST(loud.err.find(" debug scenario ") != std::string::npos, loud.err);
  BOOST_TEST(loud.err.find(" info planned 1 VMs in ") != std::string::npos, loud.err);
  auto bad = run_process({bin, "plan", "--scenario", fig2, "--log-level", "loud"}, 30);
  BOOST_TEST(bad.status == 2);
  BOOST_TEST(bad.err.find("--log-level") != std::string::npos, bad.err);
}

// journald tells a service its stderr is the journal by naming the stream's
// device and inode; a JOURNAL_STREAM inherited by a process whose stderr
// went elsewhere must not turn the prefixes on.
BOOST_AUTO_TEST_CASE(the_journal_is_recognised_by_its_stream) {
  struct stat st {};
  BOOST_TEST_REQUIRE(fstat(2, &st) == 0);
  std::string mine = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  setenv("JOURNAL_STREAM", mine.c_str(), 1);
  BOOST_TEST(cli::stderr_is_journal());
  setenv("JOURNAL_STREAM", (std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1)).c_str(), 1);
  BOOST_TEST(!cli::stderr_is_journal());
  unsetenv("JOURNAL_STREAM");
  BOOST_TEST(!cli::stderr_is_journal());
}

// The packaged file serves `run` too: every key it documents is taken, and a
// value that only run's own checks reject is still reported against the file.
BOOST_AUTO_TEST_CASE(run_reads_the_packaged_keys_and_blames_the_file_for_a_bad_value) {
  TempDir dir;
  auto file = dir.write("memlend.conf", "metrics = \"127.0.0.1:0\"\nlog-level = \"warn\"\ndatastore = \"" + dir.path +
                                            "/ds\"\ndb = \"" + dir.path + "/m.db\"\nevents-out = \"" + dir.path +
                                            "/ev.jsonl\"\ndry-run = false\n");
  auto r = run_process({bin, "run", "--config", file, "--for", "60s", "--speed", "1000", "--quiet"}, 60);
  BOOST_TEST(r.status == 0, r.err);
  BOOST_TEST(std::filesystem::exists(dir.path + "/m.db"));
  BOOST_TEST(std::filesystem::is_directory(dir.path + "/ds"));
  BOOST_TEST(std::filesystem::exists(dir.path + "/ev.jsonl"));
  BOOST_TEST(r.err.find("serving metrics") == std::string::npos, r.err);  // info is below warn

  auto bad = dir.write("bad.conf", "log-level = \"warn\"\nmetrics = \"x:y\"\n");
  r = run_process({bin, "run", "--config", bad, "--no-db"}, 30);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.out == "");
  BOOST_TEST(r.err.rfind("memlend: " + bad + ":2: key metrics: \"x:y\"", 0) == 0u, r.err);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  // Given on the command line, the same value is the flag's fault.
  r = run_process({bin, "run", "--config", bad, "--no-db", "--metrics", "x:y"}, 30);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.err.rfind("memlend: --metrics: \"x:y\"", 0) == 0u, r.err);
}

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(check_config_passes_the_packaged_file_and_starts_nothing) {
  TempDir dir;
  auto r = run_process({bin, "check-config", "--config", std::string(MEMLEND_SOURCE_DIR) + "/packaging/memlend.conf"},
                       30, dir.path);
  BOOST_TEST(r.status == 0, r.err);
  BOOST_TEST(r.err == "");
  // Nothing made: no datastore, no store.
  BOOST_TEST(std::filesystem::is_empty(dir.path));
}

BOOST_AUTO_TEST_CASE(check_config_names_the_line_and_key_of_each_problem) {
  TempDir dir;
  struct Case {
    std::string text;
    std::string line;  // what stderr says, after "memlend: FILE"
  };
  std::vector<Case> cases{
      {"# a comment\nlog-level = \"info\"\nbogus = 1\n", ":3: unknown key bogus"},
      {"dry-run = maybe\n", ":1: key dry-run: bad value \"maybe\""},
      {"metrics = \"127.0.0.1:0\"\nmetrics = \"127.0.0.1:0\"\n", ":2: key metrics is set twice (first on line 1)"},
      {"\nmetrics = \"10.0.0.1.2:9464\"\n", ":2: key metrics: \"10.0.0.1.2:9464\" does not start with an IPv4"},
      {"for = \"soon\"\n", ":1: key for: \"soon\" is not a duration"},
      {"scenario = \"" + dir.path + "/none.json\"\n", ":1: key scenario: "},
      // A key only another command takes is good in the shared file.
      {"controller = \"127.0.0.1:4711\"\nspeed = -1\n", ":2: key speed: must be more than 0"},
  };
  for (const auto& c : cases) {
    auto file = dir.write("c.conf", c.text);
    auto r = run_process({bin, "check-config", "--config", file}, 30, dir.path);
    BOOST_TEST(r.status == 2, c.text);
    BOOST_TEST(r.out == "");
    BOOST_TEST(lines_of(r.err).size() == 1u, r.err);
    BOOST_TEST(r.err.rfind("memlend: " + file + c.line, 0) == 0u, r.err << " starts with " << file + c.line);
  }
}

BOOST_AUTO_TEST_CASE(check_config_reports_every_problem_in_line_order) {
  TempDir dir;
  auto file = dir.write("several.conf",
                        "speed = 0\nbogus = 1\nlisten = \"nohost\"\ncluster = \"c\"\n"
                        "cluster-secret-file = \"" + dir.path + "/secret\"\ntls-cert = \"" + dir.path + "/c.pem\"\n"
                        "tls-key = \"" + dir.path + "/c.key\"\ntls-ca = \"" + dir.path + "/ca.pem\"\n"
                        "[section]\nbogus = 2\n");
  auto r = run_process({bin, "check-config", "--config", file}, 30, dir.path);
  BOOST_TEST(r.status == 2);
  auto lines = lines_of(r.err);
  std::vector<std::string> starts{file + ":1: key speed:", file + ":2: unknown key bogus", file + ":3: key listen:",
                                  file + ":5: key cluster-secret-file:", file + ":6: key tls-cert:",
                                  file + ":8: key tls-ca:", file + ":9: sections are not used", file + ":10: key bogus is set twice"};
  BOOST_TEST_REQUIRE(lines.size() == starts.size(), r.err);
  for (std::size_t i = 0; i < starts.size(); ++i)
    BOOST_TEST(lines[i].rfind("memlend: " + starts[i], 0) == 0u, lines[i] << " starts with " << starts[i]);
  // The same file stops run at its first problem, in the same words.
  r = run_process({bin, "run", "--config", file}, 30, dir.path);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(lines_of(r.err).size() == 1u, r.err);
}

// The agent's shipped file names its platform but not its cluster: checked
// for the agent, it says each key the operator must still set; once they
// are set (real TLS files), it is good, and it still reaches no platform.
BOOST_AUTO_TEST_CASE(check_config_for_the_agent_asks_for_what_the_shipped_file_leaves_out) {
  TempDir dir;
  std::string shipped = std::string(MEMLEND_SOURCE_DIR) + "/packaging/agent.conf";
  auto r = run_process({bin, "check-config", "--for", "agent", "--config", shipped}, 30, dir.path);
  BOOST_TEST(r.status == 2);
  auto lines = lines_of(r.err);
  BOOST_TEST_REQUIRE(lines.size() == 2u, r.err);
  BOOST_TEST(lines[0].find("key controller (not set here, so its default): agent: --controller is required") !=
                 std::string::npos,
             lines[0]);
  BOOST_TEST(lines[1].find("key cluster (not set here, so its default): a cluster name is required") !=
                 std::string::npos,
             lines[1]);

  auto openssl = run_process({memlend::test::find_program("openssl"), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                              "-subj", "/CN=node-1", "-keyout", dir.path + "/node.key", "-out", dir.path + "/node.pem"},
                             60);
  BOOST_TEST_REQUIRE(openssl.status == 0, openssl.err);
  dir.write("secret", "0123456789abcdef0123456789abcdef");
  ::chmod((dir.path + "/secret").c_str(), 0600);
  std::string filled = memlend::test::read_file(shipped) + "controller = \"10.0.0.1:4711\"\ncluster = \"c\"\n" +
                       "cluster-secret-file = \"" + dir.path + "/secret\"\ntls-cert = \"" + dir.path +
                       "/node.pem\"\ntls-key = \"" + dir.path + "/node.key\"\ntls-ca = \"" + dir.path + "/node.pem\"\n";
  auto file = dir.write("agent.conf", filled);
  r = run_process({bin, "check-config", "--for", "agent", "--config", file}, 30, dir.path);
  BOOST_TEST(r.status == 0, r.err);
  BOOST_TEST(r.out == "memlend: " + file + ": good\n");
  // The agent's own checks, as run's for run: a data-path address with no port.
  std::string line = std::to_string(std::count(filled.begin(), filled.end(), '\n') + 1);
  file = dir.write("bad.conf", filled + "listen = \"nowhere\"\n");
  r = run_process({bin, "check-config", "--for", "agent", "--config", file}, 30, dir.path);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.err == "memlend: " + file + ":" + line + ": key listen: \"nowhere\" is not HOST:PORT\n", r.err);

  // The key of an option that takes several values is set once per value;
  // any other key once.
  std::string vms = filled + "data-kib-per-gib = 1048576\nmemory-dir = \"" + dir.path + "\"\nqmp-dir = \"" + dir.path + "\"\n";
  auto vm = [&](const std::string& name) {
    return "qemu-vm = \"" + name + ",qmp=" + dir.path + "/" + name + ".qmp,max-mib=1024\"\n";
  };
  file = dir.write("two.conf", vms + vm("web-1") + vm("web-2"));
  r = run_process({bin, "check-config", "--for", "agent", "--config", file}, 30, dir.path);
  BOOST_TEST(r.status == 0, r.err);
  file = dir.write("same.conf", vms + vm("web-1") + vm("web-1"));
  r = run_process({bin, "agent", "--config", file}, 30, dir.path);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.err.find("web-1 is named twice") != std::string::npos, r.err);
  file = dir.write("twice.conf", filled + "host = \"a\"\nhost = \"b\"\n");
  r = run_process({bin, "check-config", "--for", "agent", "--config", file}, 30, dir.path);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.err.find("key host is set twice") != std::string::npos, r.err);
}
