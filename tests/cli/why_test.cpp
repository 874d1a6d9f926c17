// `memlend why` and the decisions in `memlend state --json`, as a support
// engineer runs them: the real binary on real databases, read-only.
#define BOOST_TEST_MODULE cli_why
#include <boost/test/unit_test.hpp>

#include "persistence/store.hpp"
#include "tests/persistence/support.hpp"
#include "tests/support/child.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <sstream>

using memlend::test::read_file;
using memlend::test::run_process;
using memlend::test::TempDir;

namespace {

const std::string bin = MEMLEND_BINARY;
const std::string vm3_reason = "N has 1024 MiB free for it and B lends the other 2048 MiB";

nlohmann::json run_json(const std::vector<std::string>& argv) {
  auto r = run_process(argv, 60);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  BOOST_TEST(r.err.empty(), r.err);
  return nlohmann::json::parse(r.out);
}

// One line on stderr that starts with `names` and says `what`, status 2, nothing on stdout.
void expect_bad_input(std::vector<std::string> args, const std::string& names, const std::string& what) {
  args.insert(args.begin(), {bin, "why"});
  std::string wrong = memlend::test::bad_input_answer(args, names, what);
  BOOST_TEST(wrong.empty(), wrong);
}

memlend::store::Batch decision(double t, const std::string& event, const std::string& reason) {
  memlend::store::Batch b(t);
  b.event(memlend::store::EventRecord{0, t, event, "VM1", "A", "", 4096, reason});
  return b;
}

}  // namespace

BOOST_AUTO_TEST_CASE(why_lists_a_vms_decisions_newest_first_with_their_reasons) {
  TempDir dir("why");
  std::string db = dir.file("memlend.db");
  memlend::test::write_sample_v4(db);
  {
    auto s = memlend::store::Store::open(db);
    BOOST_TEST_REQUIRE(bool(s));
    BOOST_TEST_REQUIRE((*s)->commit(decision(720, "unsatisfied", "still no host can lend 4096 MiB")).ok());
    BOOST_TEST_REQUIRE((*s)->commit(decision(730, "lease_granted", "B lends it 4096 MiB")).ok());
  }
  std::string before = read_file(db);
  auto j = run_json({bin, "why", "VM1", "--db", db, "--json"});
  BOOST_TEST(j.at("vm") == "VM1");
  BOOST_TEST(j.at("database") == db);
  const auto& d = j.at("decisions");
  BOOST_TEST_REQUIRE(d.size() == 3u);
  BOOST_TEST(d[0].at("reason") == "B lends it 4096 MiB");
  BOOST_TEST(d[0].at("event") == "lease_granted");
  BOOST_TEST(d[0].at("t_s") == 730.0);
  BOOST_TEST(d[1].at("reason") == "still no host can lend 4096 MiB");
  BOOST_TEST(d[2].at("reason") == "no host can lend 4096 MiB");
  BOOST_TEST(d[0].at("seq").get<int>() > d[1].at("seq").get<int>());
  BOOST_TEST(d[0].at("recorded_at").get<std::string>().size() == 20u);

  auto limited = run_json({bin, "why", "VM1", "--db", db, "--json", "--limit", "1"});
  BOOST_TEST_REQUIRE(limited.at("decisions").size() == 1u);
  BOOST_TEST(limited["decisions"][0].at("reason") == "B lends it 4096 MiB");

  auto text = run_process({bin, "why", "VM3", "--db", db}, 60);
  BOOST_TEST_REQUIRE(text.status == 0, text.err);
  BOOST_TEST(text.out.find(vm3_reason) != std::string::npos, text.out);
  BOOST_TEST(text.out.find("lease_granted") != std::string::npos, text.out);
  // mirror_created is no decision.
  BOOST_TEST(text.out.find("mirror_created") == std::string::npos, text.out);

  // A VM the store knows, without a decision yet.
  auto none = run_json({bin, "why", "VM2", "--db", db, "--json"});
  BOOST_TEST(none.at("decisions").empty());
  BOOST_TEST((read_file(db) == before), "memlend why changed the database");
}

BOOST_AUTO_TEST_CASE(state_json_shows_each_vms_last_decision_beside_its_columns) {
  TempDir dir("why");
  std::string db = dir.file("memlend.db");
  memlend::test::write_sample_v4(db);
  auto j = run_json({bin, "state", "--db", db, "--json"});
  for (const auto& vm : j.at("vms")) {
    // The columns vendor tooling reads are all still there.
    for (const char* c : {"id", "name", "host", "demand_mib", "local_mib", "borrowed_mib", "short_mib",
                          "recommended_target", "updated_t_s"})
      BOOST_TEST(vm.contains(c), c);
    BOOST_TEST_REQUIRE(vm.contains("last_decision"));
    if (vm.at("name") == "VM3") {
      BOOST_TEST(vm["last_decision"].at("event") == "lease_granted");
      BOOST_TEST(vm["last_decision"].at("reason") == vm3_reason);
      BOOST_TEST(vm["last_decision"].at("t_s") == 700.0);
    } else if (vm.at("name") == "VM1") {
      BOOST_TEST(vm["last_decision"].at("reason") == "no host can lend 4096 MiB");
    } else {
      BOOST_TEST(vm["last_decision"].is_null());
    }
  }
  const auto& recent = j.at("recent_events");
  BOOST_TEST_REQUIRE(recent.size() == 10u);
  BOOST_TEST(recent[7].at("reason") == vm3_reason);
  BOOST_TEST(recent[8].at("reason").is_null());

  auto text = run_process({bin, "state", "--db", db}, 60);
  BOOST_TEST_REQUIRE(text.status == 0, text.err);
  BOOST_TEST(text.out.find("last decisions (2)") != std::string::npos, text.out);
  BOOST_TEST(text.out.find(vm3_reason) != std::string::npos, text.out);
}

BOOST_AUTO_TEST_CASE(a_database_the_controller_has_not_migrated_yet_still_shows_its_state) {
  TempDir dir("why");
  std::string db = dir.file("memlend.db");
  memlend::test::write_file(db, read_file(std::string(MEMLEND_SOURCE_DIR) + "/tests/persistence/fixtures/v3.sqlite"));
  auto j = run_json({bin, "state", "--db", db, "--json"});
  BOOST_TEST(j.at("vms").size() == 3u);
  BOOST_TEST(j["vms"][0].at("last_decision").is_null());
  expect_bad_input({"VM2", "--db", db}, db, "schema version 3 keeps no reasons");
}

BOOST_AUTO_TEST_CASE(bad_input_gets_one_line_and_exit_status_2) {
  TempDir dir("why");
  std::string db = dir.file("memlend.db");
  memlend::test::write_sample_v4(db);
  expect_bad_input({"VM9", "--db", db}, db, "no VM named \"VM9\" (its VMs: VM1, VM2, VM3)");
  expect_bad_input({"VM1", "--db", dir.file("missing.db")}, dir.file("missing.db"), "no such database");
  BOOST_TEST(!memlend::test::file_exists(dir.file("missing.db")));
  std::string notes = dir.file("notes.db");
  memlend::test::write_file(notes, "not a database at all\n");
  expect_bad_input({"VM1", "--db", notes}, notes, "not an SQLite database");
  expect_bad_input({"VM1", "--db", dir.path}, dir.path, "not a regular file");
  expect_bad_input({"VM1", "--db", db, "--limit", "0"}, "--limit", "from 1 to");
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--db", db}, {"VM1", "--limit", "many"}, {"VM1", "--no-such-flag"}}) {
    std::vector<std::string> argv{bin, "why"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run_process(argv, 60);
    BOOST_TEST(r.status == 2, r.err);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  }
}

// A real run: each decision's sentence reaches the event log's line and the
// store, and `why` shows what the log says.
BOOST_AUTO_TEST_CASE(a_runs_decisions_keep_their_reasons_in_the_log_and_the_store, *boost::unit_test::timeout(300)) {
  TempDir dir("why");
  std::string db = dir.file("memlend.db");
  std::string events = dir.file("events.jsonl");
  auto run = run_process({bin, "run", "--db", db, "--events-out", events, "--for", "100", "--metrics", "off",
                          "--quiet", "--data-path", "off", "--datastore", dir.file("datastore")},
                         240);
  BOOST_TEST_REQUIRE(run.status == 0, run.err);
  std::istringstream lines(read_file(events));
  std::string line, vm;
  std::map<std::string, std::string> last_reason;
  for (std::getline(lines, line); lines; std::getline(lines, line)) {
    auto e = nlohmann::json::parse(line);
    if (e.at("event") == "lease_granted") {
      BOOST_TEST_REQUIRE(e.contains("reason"), line);
      vm = e.at("vm");
    }
    if (e.at("event") == "mirror_created") BOOST_TEST(!e.contains("reason"), line);
    if (e.contains("reason")) last_reason[e.at("vm")] = e.at("reason");
  }
  BOOST_TEST_REQUIRE(!vm.empty(), "the demo lent no memory in 100 s");
  auto j = run_json({bin, "why", vm, "--db", db, "--json"});
  BOOST_TEST_REQUIRE(!j.at("decisions").empty());
  BOOST_TEST(j["decisions"][0].at("reason") == last_reason[vm]);
}
