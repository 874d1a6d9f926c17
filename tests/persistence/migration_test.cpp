// Every schema version memlend shipped has a fixture database; each must open
// with the current code and migrate forward with its data intact.
#define BOOST_TEST_MODULE persistence_migration
#include <boost/test/unit_test.hpp>

#include "persistence/schema.hpp"
#include "persistence/store.hpp"
#include "tests/persistence/support.hpp"

#include <algorithm>
#include <filesystem>

using namespace memlend::store;
using memlend::test::file_exists;
using memlend::test::read_file;
using memlend::test::TempDir;

namespace {

const std::string fixtures = std::string(MEMLEND_SOURCE_DIR) + "/tests/persistence/fixtures";

std::string fixture(int version) { return fixtures + "/v" + std::to_string(version) + ".sqlite"; }

// A copy to open: the fixture itself is never written.
std::string copy_of(const TempDir& dir, int version) {
  std::string path = dir.file("memlend.db");
  memlend::test::write_file(path, read_file(fixture(version)));
  return path;
}

// What sample_v1() wrote, as any later version must still show it.
void check_sample_v1(const Snapshot& s) {
  BOOST_TEST(s.scenario == "sample-v1");
  BOOST_TEST(s.clock_s == 680.0);
  BOOST_TEST(s.next_lease_id == 4u);
  BOOST_TEST(s.last_event_seq == 7u);
  BOOST_TEST_REQUIRE(s.hosts.size() == 3u);
  BOOST_TEST(s.hosts[1].name == "B");
  BOOST_TEST(s.hosts[2].reserved_mib == 2048);
  BOOST_TEST_REQUIRE(s.vms.size() == 3u);
  BOOST_TEST(s.vms[1].name == "VM2");
  BOOST_TEST(s.vms[1].actor_state == "{\"generation\":1}");
  BOOST_TEST_REQUIRE(s.leases.size() == 2u);
  BOOST_TEST(s.leases[0].id == 1u);
  BOOST_TEST(s.leases[0].mib == 49152);
  BOOST_TEST(s.leases[0].state == LeaseState::active);
  BOOST_TEST(s.leases[1].state == LeaseState::reserving);
  BOOST_TEST_REQUIRE(s.mirrors.size() == 1u);
  BOOST_TEST(s.mirrors[0].path == "memlend-datastore/VM2.mirror");
  BOOST_TEST(s.mirrors[0].watermark_bytes == (1LL << 30));
  BOOST_TEST_REQUIRE(s.recommendations.size() == 1u);
  BOOST_TEST(s.recommendations[0].vm == 1u);
}

std::vector<Migration> with_a_later_version(std::string sql) {
  auto all = builtin_migrations();
  all.push_back({all.back().to_version + 1, "a test's next version", std::move(sql)});
  return all;
}

memlend::Expected<std::unique_ptr<Store>> open_with(const std::string& path, const std::vector<Migration>& known) {
  Options o;
  o.migrations = &known;
  return Store::open(path, o);
}

// The migrations of the memlend that shipped `version`.
std::vector<Migration> up_to(int version) {
  std::vector<Migration> out;
  for (const auto& m : builtin_migrations())
    if (m.to_version <= version) out.push_back(m);
  return out;
}

// What the store logs while the test runs.
struct CapturedLog {
  std::vector<std::string> lines;
  CapturedLog() {
    set_log_sink([this](LogLevel, const std::string& m) { lines.push_back(m); });
  }
  ~CapturedLog() { set_log_sink({}); }
  bool mentions(const std::string& text) const {
    for (const auto& l : lines)
      if (l.find(text) != std::string::npos) return true;
    return false;
  }
};

std::string decision_reason(const Table& t, std::size_t row) {
  auto at = std::find(t.columns.begin(), t.columns.end(), "reason") - t.columns.begin();
  return std::get<std::string>(t.rows.at(row).at(static_cast<std::size_t>(at)));
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_shipped_schema_version_has_a_fixture) {
  for (const auto& m : builtin_migrations())
    BOOST_TEST(file_exists(fixture(m.to_version)), "no fixture for schema version " << m.to_version
                                                     << " (see tests/persistence/fixtures/README.md)");
}

BOOST_AUTO_TEST_CASE(the_v1_fixture_opens_and_migrates_to_the_current_schema) {
  TempDir dir("migrate");
  std::string path = copy_of(dir, 1);
  auto s = Store::open(path);
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  BOOST_TEST((*s)->schema_version() == builtin_migrations().back().to_version);
  auto snap = (*s)->load();
  BOOST_TEST_REQUIRE(bool(snap));
  check_sample_v1(*snap);
  // And it takes new transitions on from where it was.
  LeaseRecord l = snap->leases[1];
  l.state = LeaseState::active;
  BOOST_TEST((*s)->commit(std::move(Batch(700).put(l))).ok());
}

// Version 3: a mirror may be failed, and the events that say so are taken;
// the views that read mirrors come back with the table they read.
BOOST_AUTO_TEST_CASE(the_v2_fixture_migrates_and_takes_a_failed_mirror) {
  TempDir dir("migrate");
  std::string path = copy_of(dir, 2);
  auto s = Store::open(path);
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  BOOST_TEST((*s)->schema_version() >= 3);
  auto snap = (*s)->load();
  BOOST_TEST_REQUIRE(bool(snap));
  check_sample_v1(*snap);
  Batch b(700);
  b.put(MirrorRecord{1, "memlend-datastore/VM2.mirror", 49152LL << 20, 1LL << 30, MirrorState::failed, 700});
  b.event(EventRecord{0, 700, "mirror_failed", "VM2", "A", "", 49152, ""});
  b.event(EventRecord{0, 710, "memory_lost", "VM2", "A", "B", 49152, ""});
  BOOST_TEST((*s)->commit(std::move(b)).ok());
  BOOST_TEST(memlend::test::raw_value(path, "SELECT state FROM v_mirrors WHERE vm = 'VM2'") == "failed");
  BOOST_TEST(memlend::test::raw_value(path, "SELECT mirror_state FROM v_vm_memory WHERE name = 'VM2'") == "failed");
  auto again = (*s)->load();
  BOOST_TEST_REQUIRE(bool(again));
  BOOST_TEST_REQUIRE(again->mirrors.size() == 1u);
  BOOST_TEST((again->mirrors[0].state == MirrorState::failed));
}

BOOST_AUTO_TEST_CASE(a_v1_database_migrates_to_a_later_version_with_its_data) {
  TempDir dir("migrate");
  std::string path = copy_of(dir, 1);
  auto next = with_a_later_version(
      "ALTER TABLE leases ADD COLUMN note TEXT NOT NULL DEFAULT '';"
      "CREATE INDEX leases_by_recipient ON leases (recipient)");
  {
    auto s = open_with(path, next);
    BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
    BOOST_TEST((*s)->schema_version() == next.back().to_version);
    auto snap = (*s)->load();
    BOOST_TEST_REQUIRE(bool(snap));
    check_sample_v1(*snap);
    BOOST_TEST(snap->schema_version == next.back().to_version);
  }
  BOOST_TEST(memlend::test::raw_value(path, "SELECT COUNT(*) FROM schema_history") == std::to_string(next.size()));
  BOOST_TEST(memlend::test::raw_value(path, "SELECT note FROM leases WHERE id = 1") == "");
  // The memlend of before that version no longer opens it.
  auto older = Store::open(path);
  BOOST_TEST_REQUIRE(!older);
  BOOST_TEST(older.error().message.find("newer memlend") != std::string::npos);
}

// Version 1 stored each lease's secret with its data-path address; a support
// bundle holding the file handed out access to the donors' memory.
BOOST_AUTO_TEST_CASE(migrating_removes_every_lease_secret_from_the_file) {
  TempDir dir("migrate");
  std::string path = copy_of(dir, 1);
  const std::string secret(64, 'c');
  {
    std::vector<Migration> v1_only{builtin_migrations().front()};
    auto s = open_with(path, v1_only);
    BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
    auto snap = (*s)->load();
    BOOST_TEST_REQUIRE(bool(snap));
    LeaseRecord l = snap->leases[0];
    l.datapath_key = R"({"addr":"10.0.0.2:7412","epoch":99,"id":5,"secret":")" + secret + R"("})";
    BOOST_TEST_REQUIRE((*s)->commit(std::move(Batch(680).put(l))).ok());
  }
  BOOST_TEST_REQUIRE(memlend::test::raw_value(path, "SELECT datapath_key FROM leases WHERE id = 1").find(secret) !=
                     std::string::npos);
  {
    auto s = Store::open(path);
    BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
    auto snap = (*s)->load();
    BOOST_TEST_REQUIRE(bool(snap));
    check_sample_v1(*snap);
    // Where the lease is stays (a restarted controller reconciles with it);
    // its secret is gone, and so is a key of a form no code of ours reads.
    BOOST_TEST(snap->leases[0].datapath_key == R"({"addr":"10.0.0.2:7412","epoch":99,"id":5})");
    // A secret is refused from now on, whoever tries to store one.
    LeaseRecord l = snap->leases[0];
    l.datapath_key = R"({"addr":"a","secret":"00"})";
    BOOST_TEST(!(*s)->commit(std::move(Batch(700).put(l))).ok());
  }
  // Not a byte of it left in the file or beside it (freed pages included).
  for (const char* side : {"", "-wal"})
    if (file_exists(path + side)) BOOST_TEST(read_file(path + side).find(secret) == std::string::npos, side);
  BOOST_TEST(memlend::test::raw_value(path, "SELECT COUNT(*) FROM pragma_table_info('v_leases') "
                                            "WHERE name = 'datapath_key'") == "0");
}

BOOST_AUTO_TEST_CASE(the_v1_fixtures_unreadable_keys_are_dropped) {
  TempDir dir("migrate");
  std::string path = copy_of(dir, 1);
  BOOST_TEST_REQUIRE(memlend::test::raw_value(path, "SELECT datapath_key FROM leases WHERE id = 1") ==
                     "rkey=0x17;addr=0x7f0000000000");
  BOOST_TEST_REQUIRE(bool(Store::open(path)));
  BOOST_TEST(memlend::test::raw_value(path, "SELECT datapath_key FROM leases WHERE id = 1") == "");
}

BOOST_AUTO_TEST_CASE(a_migration_that_fails_leaves_the_file_as_it_was) {
  TempDir dir("migrate");
  std::string path = copy_of(dir, 1);
  std::string before = read_file(path);
  auto broken = with_a_later_version(
      "CREATE TABLE placements (vm INTEGER PRIMARY KEY);"
      "INSERT INTO placements SELECT id FROM no_such_table");
  auto s = open_with(path, broken);
  BOOST_TEST_REQUIRE(!s);
  const std::string& m = s.error().message;
  BOOST_TEST(m.find(path) == 0u, m);
  BOOST_TEST(m.find("migrating from schema version 1 to " + std::to_string(broken.back().to_version)) !=
                 std::string::npos,
             m);
  BOOST_TEST((read_file(path) == before));
  BOOST_TEST(!file_exists(path + "-wal"));
  BOOST_TEST(!file_exists(path + "-shm"));
  // The copy made before it is one of a file that did not change: it goes.
  BOOST_TEST(!file_exists(path + ".v1.bak"));
  auto again = Store::open(path);
  BOOST_TEST_REQUIRE(bool(again), (again ? "" : again.error().message));
  BOOST_TEST((*again)->schema_version() == builtin_migrations().back().to_version);
}

BOOST_AUTO_TEST_CASE(a_migration_that_leaves_dangling_rows_is_rolled_back) {
  TempDir dir("migrate");
  std::string path = copy_of(dir, 1);
  std::string before = read_file(path);
  auto dangling = with_a_later_version("DELETE FROM vms WHERE name = 'VM2'");
  auto s = open_with(path, dangling);
  BOOST_TEST_REQUIRE(!s);
  BOOST_TEST(s.error().message.find("rows refer to rows that are not there") != std::string::npos,
             s.error().message);
  BOOST_TEST((read_file(path) == before));
}

// Version 4: an event a decision made keeps its reason. The file as it was
// is copied beside it first, named with its version, and that copy is what
// the memlend of before opens, data and all.
BOOST_AUTO_TEST_CASE(the_v3_fixture_migrates_after_a_copy_of_itself_that_version_3_opens) {
  TempDir dir("migrate");
  std::string path = copy_of(dir, 3);
  const std::string copy = path + ".v3.bak";
  {
    CapturedLog log;
    auto s = Store::open(path);
    BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
    BOOST_TEST((*s)->schema_version() >= 4);
    BOOST_TEST(log.mentions("copied to " + copy), "the log names the copy");
    auto snap = (*s)->load();
    BOOST_TEST_REQUIRE(bool(snap));
    check_sample_v1(*snap);
    // The events of before keep no reason, and are no decisions.
    auto none = (*s)->decisions("VM2", 10);
    BOOST_TEST_REQUIRE(bool(none), (none ? "" : none.error().message));
    BOOST_TEST(none->rows.empty());
    BOOST_TEST((*s)->commit(std::move(Batch(700).event(
                                EventRecord{0, 700, "unsatisfied", "VM1", "A", "", 4096, "no host can lend it"})))
                   .ok());
    auto decided = (*s)->decisions("VM1", 10);
    BOOST_TEST_REQUIRE(bool(decided), (decided ? "" : decided.error().message));
    BOOST_TEST_REQUIRE(decided->rows.size() == 1u);
    BOOST_TEST(decision_reason(*decided, 0) == "no host can lend it");
  }
  BOOST_TEST(memlend::test::raw_value(path, "SELECT COUNT(*) FROM pragma_table_info('events') WHERE name = 'reason'") ==
             "1");
  BOOST_TEST(memlend::test::raw_value(path, "SELECT reason FROM events WHERE seq = 8") == "no host can lend it");
  BOOST_TEST_REQUIRE(file_exists(copy));
  BOOST_TEST(!file_exists(copy + ".partial"));
  BOOST_TEST(memlend::test::raw_value(copy, "PRAGMA user_version") == "3");
  // The memlend of version 3 takes the copy back, as it was.
  auto v3 = up_to(3);
  auto older = open_with(copy, v3);
  BOOST_TEST_REQUIRE(bool(older), (older ? "" : older.error().message));
  BOOST_TEST((*older)->schema_version() == 3);
  auto snap = (*older)->load();
  BOOST_TEST_REQUIRE(bool(snap));
  check_sample_v1(*snap);
}

BOOST_AUTO_TEST_CASE(a_copy_that_cannot_be_made_stops_the_migration_with_the_file_as_it_was) {
  TempDir dir("migrate");
  std::string path = copy_of(dir, 3);
  std::string before = read_file(path);
  // Where the copy is written first, something that is not to be removed.
  std::filesystem::create_directory(path + ".v3.bak.partial");
  memlend::test::write_file(path + ".v3.bak.partial/keep", "an operator's file");
  auto s = Store::open(path);
  BOOST_TEST_REQUIRE(!s);
  const std::string& m = s.error().message;
  BOOST_TEST(m.find(path + ": cannot copy it to " + path + ".v3.bak") == 0u, m);
  BOOST_TEST(m.find("the file was left as it is") != std::string::npos, m);
  BOOST_TEST(std::count(m.begin(), m.end(), '\n') == 0);
  BOOST_TEST((read_file(path) == before));
  BOOST_TEST(!file_exists(path + ".v3.bak"));
  BOOST_TEST(!file_exists(path + "-wal"));
  BOOST_TEST(file_exists(path + ".v3.bak.partial/keep"));
  BOOST_TEST(memlend::test::raw_value(path, "PRAGMA user_version") == "3");
}

BOOST_AUTO_TEST_CASE(a_new_file_and_one_at_the_newest_version_are_not_copied) {
  TempDir dir("migrate");
  std::string path = dir.file("memlend.db");
  BOOST_TEST_REQUIRE(bool(Store::open(path)));
  BOOST_TEST_REQUIRE(bool(Store::open(path)));
  for (const auto& entry : std::filesystem::directory_iterator(dir.path))
    BOOST_TEST(entry.path().filename().string().find(".bak") == std::string::npos, entry.path());
}

// An older copy of the same version is never overwritten.
BOOST_AUTO_TEST_CASE(an_earlier_copy_stays_and_the_new_one_takes_another_name) {
  TempDir dir("migrate");
  std::string path = copy_of(dir, 3);
  memlend::test::write_file(path + ".v3.bak", "an earlier copy");
  CapturedLog log;
  BOOST_TEST_REQUIRE(bool(Store::open(path)));
  BOOST_TEST(read_file(path + ".v3.bak") == "an earlier copy");
  int copies = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("memlend.db.v3-", 0) == 0 && name.size() > 4 && name.substr(name.size() - 4) == ".bak") {
      ++copies;
      BOOST_TEST(log.mentions(entry.path().string()));
      BOOST_TEST(memlend::test::raw_value(entry.path().string(), "PRAGMA user_version") == "3");
    }
  }
  BOOST_TEST(copies == 1);
}

BOOST_AUTO_TEST_CASE(the_v4_fixture_keeps_its_decisions_and_their_reasons) {
  TempDir dir("migrate");
  std::string path = copy_of(dir, 4);
  auto s = Store::open(path);
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  auto snap = (*s)->load();
  BOOST_TEST_REQUIRE(bool(snap));
  BOOST_TEST(snap->last_event_seq == 10u);
  auto vm3 = (*s)->decisions("VM3", 10);
  BOOST_TEST_REQUIRE(bool(vm3), (vm3 ? "" : vm3.error().message));
  // mirror_created is no decision: only the grant is listed.
  BOOST_TEST_REQUIRE(vm3->rows.size() == 1u);
  BOOST_TEST(decision_reason(*vm3, 0) == "N has 1024 MiB free for it and B lends the other 2048 MiB");
  auto vm1 = (*s)->decisions("VM1", 10);
  BOOST_TEST_REQUIRE(bool(vm1));
  BOOST_TEST_REQUIRE(vm1->rows.size() == 1u);
  BOOST_TEST(decision_reason(*vm1, 0) == "no host can lend 4096 MiB");
  auto events = (*s)->events(7);
  BOOST_TEST_REQUIRE(bool(events));
  BOOST_TEST_REQUIRE(events->size() == 3u);
  BOOST_TEST((*events)[0].reason == "N has 1024 MiB free for it and B lends the other 2048 MiB");
  BOOST_TEST((*events)[1].reason.empty());
  BOOST_TEST((*events)[2].reason == "no host can lend 4096 MiB");
}

BOOST_AUTO_TEST_CASE(the_v5_fixture_keeps_its_epoch_which_only_rises) {
  TempDir dir("migrate");
  {
    // Migrated from version 4: no controller has raised it yet.
    auto s = Store::open(copy_of(dir, 4));
    BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
    auto snap = (*s)->load();
    BOOST_TEST_REQUIRE(bool(snap));
    BOOST_TEST(snap->epoch == 0u);
  }
  auto s = Store::open(copy_of(dir, 5));
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  auto snap = (*s)->load();
  BOOST_TEST_REQUIRE(bool(snap));
  BOOST_TEST(snap->epoch == 2u);
  BOOST_TEST(snap->last_event_seq == 10u);
  auto same = (*s)->commit(Batch(740).epoch(2));
  BOOST_TEST((same.status == Status::refused), same.error);
  BOOST_TEST(same.error.find("the leadership epoch only rises") != std::string::npos, same.error);
  auto raised = (*s)->commit(Batch(740).epoch(3));
  BOOST_TEST(raised.ok(), raised.error);
  auto view = (*s)->read(View::controller);
  BOOST_TEST_REQUIRE(bool(view));
  BOOST_TEST(view->columns.back() == "epoch");
  BOOST_TEST(std::get<std::int64_t>(view->rows.at(0).back()) == 3);
}
