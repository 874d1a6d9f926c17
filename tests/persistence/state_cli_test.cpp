// `memlend state` as a support engineer runs it: the real binary on a real
// database, read-only, also while a controller has the database open.
#define BOOST_TEST_MODULE persistence_state_cli
#include <boost/test/unit_test.hpp>

#include "persistence/store.hpp"
#include "tests/persistence/support.hpp"
#include "tests/support/child.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <regex>

#include <unistd.h>

using memlend::test::file_exists;
using memlend::test::read_file;
using memlend::test::run_process;
using memlend::test::TempDir;

namespace {

const std::string bin = MEMLEND_BINARY;

// The database and its WAL, byte for byte, and which side files exist. The
// -shm's contents are left out: it is the WAL's shared-memory index, where
// every reader, read-only ones too, marks what it reads.
std::string fingerprint(const std::string& path) {
  std::string out = read_file(path);
  for (const char* suffix : {"-wal", "-lock"})
    out += std::string("|") + suffix + (file_exists(path + suffix) ? read_file(path + suffix) : "absent");
  return out + "|-shm " + (file_exists(path + "-shm") ? "present" : "absent");
}

// One line on stderr naming the file, exit status 2, nothing on stdout.
void expect_bad_input(const std::vector<std::string>& args, const std::string& names, const std::string& what) {
  std::vector<std::string> argv{bin, "state"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string wrong = memlend::test::bad_input_answer(argv, names, what);
  BOOST_TEST(wrong.empty(), wrong);
}

const nlohmann::json& by(const nlohmann::json& rows, const std::string& key, const nlohmann::json& value) {
  for (const auto& r : rows)
    if (r.at(key) == value) return r;
  BOOST_FAIL("no row with " << key << " = " << value);
  return rows;
}

}  // namespace

BOOST_AUTO_TEST_CASE(json_has_every_array_support_tooling_reads_and_the_file_is_untouched) {
  TempDir dir("state");
  std::string db = dir.file("memlend.db");
  memlend::test::write_sample_v1(db);
  ::unlink((db + "-lock").c_str());
  std::string before = fingerprint(db);
  auto r = run_process({bin, "state", "--db", db, "--json"}, 60);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  BOOST_TEST(r.err.empty());
  auto j = nlohmann::json::parse(r.out);
  for (const char* key : {"hosts", "vms", "leases", "mirrors", "recommendations"})
    BOOST_TEST(j.at(key).is_array(), key);
  BOOST_TEST_REQUIRE(j["leases"].size() == 3u);
  const auto& lease = by(j["leases"], "id", 1);
  BOOST_TEST(lease.at("vm") == "VM2");
  BOOST_TEST(lease.at("donor") == "B");
  BOOST_TEST(lease.at("recipient") == "A");
  BOOST_TEST(lease.at("mib") == 49152);
  BOOST_TEST(lease.at("state") == "active");
  BOOST_TEST(by(j["leases"], "id", 2).at("state") == "released");
  BOOST_TEST(by(j["leases"], "id", 3).at("state") == "reserving");
  const auto& mirror = by(j["mirrors"], "vm", "VM2");
  BOOST_TEST(mirror.at("path") == "memlend-datastore/VM2.mirror");
  BOOST_TEST(mirror.at("mib") == 49152);
  const auto& rec = by(j["recommendations"], "vm", "VM2");
  BOOST_TEST(rec.at("target") == "B");
  BOOST_TEST(rec.at("reason").get<std::string>().find("630 s") != std::string::npos);
  BOOST_TEST(by(j["hosts"], "name", "B").at("lent_mib") == 49152);
  BOOST_TEST(by(j["hosts"], "name", "B").at("up") == true);
  BOOST_TEST(by(j["vms"], "name", "VM2").at("borrowed_mib") == 49152);
  BOOST_TEST(j.at("controller").at("clock_s") == 680.0);
  BOOST_TEST(j.at("recent_events").size() == 7u);
  BOOST_TEST((fingerprint(db) == before), "memlend state changed the database or made files beside it");
}

BOOST_AUTO_TEST_CASE(export_writes_a_plain_file_with_the_same_views_and_never_overwrites) {
  TempDir dir("state");
  std::string db = dir.file("memlend.db");
  memlend::test::write_sample_v1(db);
  ::unlink((db + "-lock").c_str());
  std::string before = fingerprint(db);
  std::string copy = dir.file("export.db");
  auto r = run_process({bin, "state", "--db", db, "--export", copy}, 60);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  BOOST_TEST(r.out.find("exported " + db + " (schema version ") == 0u, r.out);
  BOOST_TEST(r.out.find(") to " + copy + "\n") != std::string::npos, r.out);
  BOOST_TEST((fingerprint(db) == before), "memlend state --export changed the database or made files beside it");
  BOOST_TEST(!file_exists(copy + "-wal"));
  BOOST_TEST(!file_exists(copy + ".partial"));
  // sqlite3 reads the copy's views as memlend state reads the store's.
  auto lending = run_process({"/usr/bin/sqlite3", "-readonly", copy,
                              "SELECT name, lent_mib FROM v_host_lending WHERE name = 'B'"}, 60);
  BOOST_TEST_REQUIRE(lending.status == 0, lending.err);
  BOOST_TEST(lending.out == "B|49152\n");
  auto original = run_process({bin, "state", "--db", db, "--json"}, 60);
  auto copied = run_process({bin, "state", "--db", copy, "--json"}, 60);
  BOOST_TEST_REQUIRE(copied.status == 0, copied.err);
  auto a = nlohmann::json::parse(original.out), b = nlohmann::json::parse(copied.out);
  for (const char* key : {"hosts", "vms", "leases", "mirrors", "recommendations", "recent_events"})
    BOOST_TEST(a.at(key) == b.at(key), key);
  // An existing file is never written over; a directory that is not there is said.
  std::string kept = read_file(copy);
  expect_bad_input({"--db", db, "--export", copy}, db + ": cannot export it to " + copy, "exists");
  BOOST_TEST((read_file(copy) == kept));
  expect_bad_input({"--db", db, "--export", dir.file("none/export.db")}, db, "none/export.db: No such file");
  expect_bad_input({"--db", db, "--export", dir.file("x.db"), "--json"}, "--export and --json", "choose one");
  BOOST_TEST(!file_exists(dir.file("x.db")));
}

BOOST_AUTO_TEST_CASE(text_shows_live_leases_and_counts_the_history) {
  TempDir dir("state");
  std::string db = dir.file("memlend.db");
  memlend::test::write_sample_v1(db);
  // Without --db: memlend.db in the working directory.
  auto r = run_process({bin, "state"}, 60, dir.path);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  BOOST_TEST(r.out.find("scenario clock 680 s") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("leases, not released (2)") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("1 released leases kept as history") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("migration_recommended") != std::string::npos, r.out);
}

BOOST_AUTO_TEST_CASE(it_reads_what_a_running_controller_committed_without_disturbing_it) {
  TempDir dir("state");
  std::string db = dir.file("memlend.db");
  auto controller = memlend::store::Store::open(db);
  BOOST_TEST_REQUIRE(bool(controller));
  for (auto& b : memlend::test::sample_v1()) BOOST_TEST_REQUIRE((*controller)->commit(std::move(b)).ok());
  BOOST_TEST_REQUIRE(file_exists(db + "-wal"));  // the state is (partly) in the WAL
  std::string before = fingerprint(db);
  auto r = run_process({bin, "state", "--db", db, "--json"}, 60);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  auto j = nlohmann::json::parse(r.out);
  BOOST_TEST(j["leases"].size() == 3u);
  BOOST_TEST((fingerprint(db) == before));
  memlend::store::EventRecord e;
  e.t_s = 700;
  e.event = "unsatisfied";
  BOOST_TEST((*controller)->commit(std::move(memlend::store::Batch(700).event(e))).ok());
}

BOOST_AUTO_TEST_CASE(bad_databases_get_one_line_and_exit_status_2) {
  TempDir dir("state");
  expect_bad_input({"--db", dir.file("missing.db")}, dir.file("missing.db"), "no such database");
  BOOST_TEST(!file_exists(dir.file("missing.db")));
  std::string notes = dir.file("notes.db");
  memlend::test::write_file(notes, "not a database at all, just some notes\n");
  expect_bad_input({"--db", notes}, notes, "not an SQLite database");
  std::string newer = dir.file("newer.db");
  memlend::test::write_sample_v1(newer);
  memlend::test::raw_sql(newer, "PRAGMA user_version = 9");
  expect_bad_input({"--db", newer, "--json"}, newer, "newer memlend");
  std::string torn = dir.file("torn.db");
  memlend::test::write_sample_v1(torn);
  std::string bytes = read_file(torn);
  memlend::test::write_file(torn, bytes.substr(0, bytes.size() / 2));
  expect_bad_input({"--db", torn}, torn, "damaged");
  expect_bad_input({"--db", dir.path}, dir.path, "not a regular file");
}

BOOST_AUTO_TEST_CASE(bad_flags_get_exit_status_2) {
  auto r = run_process({bin, "state", "--no-such-flag"}, 60);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
}

// systemd stops the controller with SIGTERM: the run ends in order (exit 0),
// its lock goes, and what it committed is there to read and to resume from.
BOOST_AUTO_TEST_CASE(sigterm_ends_a_run_with_a_store_in_order, *boost::unit_test::timeout(120)) {
  TempDir dir("state");
  std::string db = dir.file("memlend.db");
  memlend::test::Child run({bin, "run", "--db", db, "--metrics", "off", "--for", "10h", "--speed", "50",
                            "--quiet", "--datastore", dir.file("datastore")},
                           dir.file("run"));
  // Bounded wait for the child to have committed its hosts; never a timing assertion.
  bool started = false;
  for (int i = 0; i < 600 && !started && run.running(); ++i) {
    auto r = run_process({bin, "state", "--db", db, "--json"}, 60);
    started = r.status == 0 && !nlohmann::json::parse(r.out, nullptr, false).value("hosts", nlohmann::json()).empty();
    if (!started) ::usleep(100 * 1000);
  }
  BOOST_TEST_REQUIRE(started, run.err());
  BOOST_TEST(run.stop() == 0, run.err());
  auto again = memlend::store::Store::open(db);
  BOOST_TEST_REQUIRE(bool(again), (again ? "" : again.error().message));
  BOOST_TEST(!(*again)->load()->hosts.empty());
}

namespace {

// Runs of 64 hex digits (a 256-bit key's width) in `text`, except the
// scenario's fingerprint, a SHA-256 that says "sha256:" before it.
std::vector<std::string> keys_in(const std::string& text) {
  static const std::regex hex("(sha256:)?[0-9a-fA-F]{64,}");
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), hex); it != std::sregex_iterator(); ++it)
    if (!(*it)[1].matched) out.push_back(it->str());
  return out;
}

}  // namespace

// A support bundle is pasted into tickets: a lease's secret in it opened the
// donor's memory to anyone who read the ticket (a script read and overwrote
// a VM's memory with it). A real run on the real data path, then everything
// support tooling reads: no key anywhere.
BOOST_AUTO_TEST_CASE(no_lease_secret_in_state_the_views_the_store_or_the_event_log, *boost::unit_test::timeout(300)) {
  TempDir dir("state");
  std::string db = dir.file("memlend.db");
  std::string events = dir.file("events.jsonl");
  auto run = run_process({bin, "run", "--db", db, "--events-out", events, "--for", "100", "--metrics", "off",
                          "--quiet", "--data-path", "on", "--datastore", dir.file("datastore")},
                         240);
  BOOST_TEST_REQUIRE(run.status == 0, run.err);
  std::string log = read_file(events);
  // The run lent memory over the real data path, so there were secrets to leak.
  BOOST_TEST_REQUIRE(log.find("\"lease_granted\"") != std::string::npos, log);
  std::map<std::string, std::string> outputs{{"event log", log}, {"store file", read_file(db)}};
  for (const char* side : {"-wal"})
    if (file_exists(db + side)) outputs[std::string("store") + side] = read_file(db + side);
  auto text = run_process({bin, "state", "--db", db}, 60);
  auto json = run_process({bin, "state", "--db", db, "--json"}, 60);
  BOOST_TEST_REQUIRE(json.status == 0, json.err);
  BOOST_TEST_REQUIRE(!nlohmann::json::parse(json.out)["leases"].empty());
  outputs["state"] = text.out;
  outputs["state --json"] = json.out;
  for (const char* query : {".dump", "SELECT * FROM v_leases", "SELECT * FROM v_recent_events"}) {
    auto r = run_process({"/usr/bin/sqlite3", "-readonly", db, query}, 60);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
    outputs[query] = r.out;
  }
  for (const auto& [what, out] : outputs) {
    auto keys = keys_in(out);
    BOOST_TEST(keys.empty(), what << " holds " << keys.size() << " keys, the first " << (keys.empty() ? "" : keys[0]));
  }
}
