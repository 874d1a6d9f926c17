#define BOOST_TEST_MODULE cli_log
#include <boost/test/unit_test.hpp>

// The log as a collector reads it: --log-format json on stderr, and the
// journal's native protocol under journald. The real memlend binary runs the
// built-in demo each time. For the journal, a real AF_UNIX datagram socket of
// this test stands where journald's is: memlend runs in a mount namespace of
// its own (unshare(1)) whose /run/systemd/journal is a directory of the test,
// so that libsystemd's sd_journal_sendv, which knows no other path, delivers
// to it, and JOURNAL_STREAM names memlend's stderr as systemd would.

#include "tests/support/child.hpp"
#include "tests/support/datagram_socket.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <unistd.h>

namespace utf = boost::unit_test;
using memlend::test::Child;
using memlend::test::make_temp_dir;
using memlend::test::run_process;
using namespace std::chrono_literals;

namespace {

const std::string bin = MEMLEND_BINARY;
const std::string unshare = "/usr/bin/unshare";

struct TempDir {
  std::string path = make_temp_dir("log");
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// The demo, quick and self-contained: no store, no metrics port, the data
// path simulated; it lends, loses a donor (A3), re-homes and recommends.
const std::vector<std::string> demo{"run", "--for", "1200s", "--speed", "200", "--no-db", "--metrics", "off",
                                    "--data-path", "off"};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// One journal entry: each field's values (a field may repeat).
using Entry = std::map<std::string, std::vector<std::string>>;

// journald's native protocol: FIELD=value lines, or, for a value holding a
// newline, FIELD, a newline, its length (64 bits, little-endian), the value
// and a newline.
Entry parse_entry(const std::string& d) {
  Entry e;
  std::size_t i = 0;
  while (i < d.size()) {
    std::size_t nl = d.find('\n', i);
    BOOST_TEST_REQUIRE(nl != std::string::npos, "a field without its newline: " << d.substr(i));
    std::string line = d.substr(i, nl - i);
    auto eq = line.find('=');
    if (eq != std::string::npos) {
      e[line.substr(0, eq)].push_back(line.substr(eq + 1));
      i = nl + 1;
      continue;
    }
    BOOST_TEST_REQUIRE(nl + 9 <= d.size());
    std::uint64_t n = 0;
    for (int b = 7; b >= 0; --b) n = n << 8 | static_cast<unsigned char>(d[nl + 1 + b]);
    BOOST_TEST_REQUIRE(nl + 9 + n < d.size());
    e[line].push_back(d.substr(nl + 9, n));
    i = nl + 9 + n + 1;
  }
  return e;
}

std::string one(const Entry& e, const std::string& field) {
  auto it = e.find(field);
  if (it == e.end()) return {};
  BOOST_TEST(it->second.size() == 1u, field);
  return it->second.front();
}

// journald's side of /run/systemd/journal/socket.
class JournalSocket : public memlend::test::DatagramSocket {
 public:
  using DatagramSocket::DatagramSocket;
  // Reads entries until the child has ended and nothing is left, or the
  // deadline: the child's sends block once a few datagrams wait unread.
  std::vector<Entry> collect(Child& c, std::chrono::seconds within) {
    std::vector<Entry> out;
    auto deadline = std::chrono::steady_clock::now() + within;
    bool ended = false;
    while (std::chrono::steady_clock::now() < deadline) {
      std::string d = next(200ms);
      if (!d.empty()) {
        out.push_back(parse_entry(d));
        continue;
      }
      if (ended) break;  // ended, and a quiet wait since: all is read
      ended = !c.running();
    }
    return out;
  }
};

// memlend in a mount namespace whose /run/systemd/journal is `journal_dir`,
// with JOURNAL_STREAM naming its stderr, as systemd starts a service whose
// output goes to the journal.
std::unique_ptr<Child> under_journald(const TempDir& dir, const std::string& journal_dir,
                                      const std::vector<std::string>& args) {
  // A tmpfs on /run, in the namespace only: nothing is made on the machine's own.
  const std::string script =
      "mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && mount --bind \"$1\" /run/systemd/journal && "
      "JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM && shift && exec \"$@\"";
  std::vector<std::string> argv{unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                                journal_dir, bin};
  argv.insert(argv.end(), args.begin(), args.end());
  Child::Options o(dir.path + "/memlend");
  o.workdir = dir.path;
  return std::make_unique<Child>(argv, o);
}

boost::test_tools::assertion_result mount_namespaces(utf::test_unit_id) {
  if (::access(unshare.c_str(), X_OK) != 0) {
    boost::test_tools::assertion_result no(false);
    no.message() << "skipped: no " << unshare << " (util-linux) here";
    return no;
  }
  auto r = run_process({unshare, "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs tmpfs /run"}, 30);
  boost::test_tools::assertion_result ok(r.status == 0);
  ok.message() << "skipped: no mount namespace here (unshare --mount needs root or CAP_SYS_ADMIN): " << r.err;
  return ok;
}

const Entry* find_event(const std::vector<Entry>& entries, const std::string& event) {
  for (const auto& e : entries)
    if (one(e, "MEMLEND_EVENT") == event) return &e;
  return nullptr;
}

}  // namespace

BOOST_AUTO_TEST_CASE(json_lines_parse_and_carry_the_fields) {
  TempDir dir;
  std::vector<std::string> argv{bin};
  argv.insert(argv.end(), demo.begin(), demo.end());
  argv.insert(argv.end(), {"--log-format", "json"});
  auto r = run_process(argv, 120, dir.path);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  // The collector has it all on one stream; stdout's console lines became events.
  BOOST_TEST(r.out.empty(), r.out);
  static const std::regex rfc3339(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$)");
  static const std::set<std::string> levels{"trace", "debug", "info", "warn", "error", "critical"};
  std::map<std::string, std::vector<nlohmann::json>> by_event;
  auto lines = lines_of(r.err);
  BOOST_TEST_REQUIRE(lines.size() > 10u, r.err);
  for (const auto& line : lines) {
    nlohmann::json j;
    BOOST_REQUIRE_NO_THROW(j = nlohmann::json::parse(line));
    BOOST_TEST_REQUIRE(j.is_object(), line);
    BOOST_TEST(std::regex_match(j.at("time").get<std::string>(), rfc3339), line);
    BOOST_TEST(levels.count(j.at("level").get<std::string>()) == 1u, line);
    BOOST_TEST(!j.at("message").get<std::string>().empty(), line);
    if (j.contains("event")) by_event[j["event"].get<std::string>()].push_back(j);
  }
  BOOST_TEST_REQUIRE(by_event.count("lease_granted"), r.err);
  const auto& granted = by_event["lease_granted"].front();
  BOOST_TEST(granted["vm"] == "VM2");
  BOOST_TEST(granted["host"] == "A2");
  BOOST_TEST(granted["donor"] == "B2");
  BOOST_TEST(granted["lease"].get<std::uint64_t>() > 0u);
  BOOST_TEST(granted["level"] == "info");
  BOOST_TEST(granted["t_s"].get<double>() > 0);
  std::string lease = std::to_string(granted["lease"].get<std::uint64_t>());
  BOOST_TEST(granted["message"].get<std::string>().find("(lease " + lease + ")") != std::string::npos);
  // A host going down is a warning, about that host.
  BOOST_TEST_REQUIRE(by_event.count("donor_failed"), r.err);
  BOOST_TEST(by_event["donor_failed"].front()["host"] == "A3");
  BOOST_TEST(by_event["donor_failed"].front()["level"] == "warn");
  BOOST_TEST_REQUIRE(by_event.count("lease_rehomed"), r.err);
  BOOST_TEST(by_event["lease_rehomed"].front()["lease"].get<std::uint64_t>() > 0u);
  BOOST_TEST_REQUIRE(by_event.count("migration_recommended"), r.err);
  BOOST_TEST(by_event["migration_recommended"].front()["vm"] == "VM5");
  // A console line that is no event still says what it is about: A3 coming back.
  bool up = false;
  for (const auto& line : lines) {
    auto j = nlohmann::json::parse(line);
    if (j["message"] == "A3 is up and may lend") up = j.value("host", "") == "A3" && !j.contains("event");
  }
  BOOST_TEST(up, r.err);
}

BOOST_AUTO_TEST_CASE(json_serves_the_commands_that_log_through_spdlog) {
  const std::string fig2 = std::string(MEMLEND_SOURCE_DIR) + "/examples/fig2.json";
  auto r = run_process({bin, "plan", "--scenario", fig2, "--log-level", "debug", "--log-format", "json"}, 30);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  auto lines = lines_of(r.err);
  BOOST_TEST_REQUIRE(lines.size() == 2u, r.err);
  auto planned = nlohmann::json::parse(lines[1]);
  BOOST_TEST(planned["level"] == "info");
  BOOST_TEST(planned["message"].get<std::string>().rfind("planned 1 VMs in ", 0) == 0u, lines[1]);
  BOOST_TEST(!planned.contains("vm"));
}

BOOST_AUTO_TEST_CASE(a_bad_log_format_is_one_line_and_status_2) {
  for (const char* command : {"run", "plan", "state", "donor"}) {
    auto r = run_process({bin, command, "--log-format", "xml"}, 30);
    BOOST_TEST(r.status == 2, command);
    BOOST_TEST(r.out.empty(), command);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
    BOOST_TEST(r.err.find("--log-format") != std::string::npos, r.err);
  }
}

BOOST_AUTO_TEST_CASE(under_journald_events_are_journal_entries_with_their_fields,
                     *utf::precondition(mount_namespaces)) {
  TempDir dir;
  std::filesystem::create_directory(dir.path + "/journal");
  JournalSocket journal(dir.path + "/journal/socket");
  auto c = under_journald(dir, dir.path + "/journal", demo);
  auto entries = journal.collect(*c, 120s);
  BOOST_TEST_REQUIRE(c->wait(10s) == 0, c->err());
  // Everything went to the journal: nothing was left for its stream.
  BOOST_TEST(c->out().empty(), c->out());
  BOOST_TEST(c->err().empty(), c->err());
  BOOST_TEST_REQUIRE(entries.size() > 10u);
  for (const auto& e : entries) {
    BOOST_TEST(one(e, "SYSLOG_IDENTIFIER") == "memlend");
    BOOST_TEST(!one(e, "MESSAGE").empty());
    BOOST_TEST(!one(e, "PRIORITY").empty());
    // Where the sink is would say nothing of where the event was.
    BOOST_TEST(!e.count("CODE_FILE"));
  }
  const Entry* granted = find_event(entries, "lease_granted");
  BOOST_TEST_REQUIRE(granted);
  BOOST_TEST(one(*granted, "MEMLEND_VM") == "VM2");
  BOOST_TEST(one(*granted, "MEMLEND_HOST") == "A2");
  BOOST_TEST(one(*granted, "MEMLEND_DONOR") == "B2");
  BOOST_TEST(one(*granted, "PRIORITY") == "6");
  std::string lease = one(*granted, "MEMLEND_LEASE");
  BOOST_TEST_REQUIRE(!lease.empty());
  BOOST_TEST(one(*granted, "MESSAGE").find("(lease " + lease + ")") != std::string::npos);
  const Entry* down = find_event(entries, "donor_failed");
  BOOST_TEST_REQUIRE(down);
  BOOST_TEST(one(*down, "MEMLEND_HOST") == "A3");
  BOOST_TEST(one(*down, "PRIORITY") == "4");
  // Only the fields the event has.
  BOOST_TEST(!down->count("MEMLEND_VM"));
  BOOST_TEST(!down->count("MEMLEND_LEASE"));
}

// No journald behind the path (libsystemd calls that a success), or one that
// is gone, its socket left behind: the events still reach the stream.
BOOST_AUTO_TEST_CASE(a_journal_socket_that_takes_nothing_leaves_the_events_on_stderr,
                     *utf::precondition(mount_namespaces)) {
  for (bool left_behind : {false, true}) {
    TempDir dir;
    std::filesystem::create_directory(dir.path + "/journal");
    if (left_behind) JournalSocket gone(dir.path + "/journal/socket");
    auto c = under_journald(dir, dir.path + "/journal", demo);
    BOOST_TEST_REQUIRE(c->wait(120s) == 0, c->err());
    BOOST_TEST(c->out().empty(), c->out());
    bool granted = false, down = false;
    for (const auto& line : lines_of(c->err())) {
      BOOST_TEST(std::regex_match(line, std::regex("<[0-7]>.+")), line);
      granted = granted || (line.rfind("<6>B2 lends VM2 ", 0) == 0);
      down = down || (line.rfind("<4>A3 is down", 0) == 0);
    }
    BOOST_TEST(granted, "left behind " << left_behind << ": " << c->err());
    BOOST_TEST(down, "left behind " << left_behind << ": " << c->err());
  }
}
