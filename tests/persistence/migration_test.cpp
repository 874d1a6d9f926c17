// Every schema version memlend shipped has a fixture database; each must open
// with the current code and migrate forward with its data intact.
#define BOOST_TEST_MODULE persistence_migration
#include <boost/test/unit_test.hpp>

#include "persistence/schema.hpp"
#include "persistence/store.hpp"
#include "tests/persistence/support.hpp"

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
  b.event(EventRecord{0, 700, "mirror_failed", "VM2", "A", "", 49152});
  b.event(EventRecord{0, 710, "memory_lost", "VM2", "A", "B", 49152});
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
