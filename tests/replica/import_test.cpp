#define BOOST_TEST_MODULE replica_import
#include <boost/test/unit_test.hpp>

// The upgrade from one node to a cluster: a single-node store's file is
// imported into a cluster's store that no controller has written to yet,
// every row of it, and set aside; a store a controller wrote to leaves the
// file alone; a file that is no good store is refused with nothing imported;
// and what an import that stopped halfway left is never taken for a store.
// A real three-node dqlite cluster (tests/replica/cluster.hpp).

#include "persistence/schema.hpp"
#include "persistence/store.hpp"
#include "tests/persistence/support.hpp"
#include "tests/replica/cluster.hpp"
#include "tests/replica/store_support.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

using namespace memlend::store;
using namespace memlend::test::replica_cluster;
using namespace memlend::test::replica_store;
using memlend::test::file_exists;
using memlend::test::TempDir;

namespace {

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

Replica through(const Cluster& cluster, const std::string& database, const std::string& import = "") {
  Replica r;
  r.members = cluster.addresses();
  r.database = database;
  r.find_leader = election_bound;
  r.import_file = import;
  return r;
}

// What the store logs while this lives.
struct CapturedLog {
  CapturedLog() {
    set_log_sink([this](LogLevel, const std::string& m) { lines.push_back(m); });
  }
  ~CapturedLog() { set_log_sink({}); }
  std::string all() const {
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }
  std::vector<std::string> lines;
};

// For each table of a database file, a query whose rows are that table's
// rows, each as one text: every value with its type, in hex (a text's every
// byte, NULs too) or, for a real, with digits enough to tell any two apart.
// Run on the file and on the cluster (the same SQLite formats both), it
// shows whether they hold the same rows.
std::map<std::string, std::string> dump_queries(sqlite3* db) {
  std::map<std::string, std::string> out;
  std::vector<std::string> tables;
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'", -1,
                     &st, nullptr);
  while (sqlite3_step(st) == SQLITE_ROW) tables.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
  sqlite3_finalize(st);
  for (const auto& t : tables) {
    BOOST_TEST_REQUIRE(sqlite3_prepare_v2(db, ("SELECT * FROM \"" + t + "\"").c_str(), -1, &st, nullptr) == SQLITE_OK);
    std::string row;
    for (int i = 0; i < sqlite3_column_count(st); ++i) {
      std::string c = std::string("\"") + sqlite3_column_name(st, i) + "\"";
      row += (i ? " || '|' || " : "") + ("typeof(" + c + ") || ':' || CASE typeof(" + c + ") WHEN 'real' THEN printf('%!.20e', " +
             c + ") ELSE hex(" + c + ") END");
    }
    sqlite3_finalize(st);
    out[t] = "SELECT " + row + " FROM \"" + t + "\"";
  }
  return out;
}

// Every row of the file's tables and of the same tables of the cluster's
// database are the same.
void expect_same_rows(const std::string& file, const Cluster& cluster, const std::string& database) {
  sqlite3* db = nullptr;
  BOOST_TEST_REQUIRE(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK, file);
  Client c = must(connect_leader(cluster.addresses(), database, election_bound), "leader");
  auto queries = dump_queries(db);
  BOOST_TEST_REQUIRE(queries.count("events") == 1u);
  for (const auto& [table, query] : queries) {
    std::vector<std::string> here, there;
    sqlite3_stmt* st = nullptr;
    BOOST_TEST_REQUIRE(sqlite3_prepare_v2(db, query.c_str(), -1, &st, nullptr) == SQLITE_OK, table);
    while (sqlite3_step(st) == SQLITE_ROW) here.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)));
    sqlite3_finalize(st);
    auto rows = must(c.query(query), table.c_str());
    for (const auto& r : rows.rows) there.push_back(std::get<std::string>(r.at(0)));
    std::sort(here.begin(), here.end());
    std::sort(there.begin(), there.end());
    BOOST_TEST(here.size() == there.size(), table);
    BOOST_TEST((here == there), table);
  }
  sqlite3_close(db);
}

// The sample of every schema version, then many events (text that SQL must
// quote, a NUL inside; several transactions' worth, enough for dqlite 1.11.1
// to fail one that spilled its pages, replicated.cpp) of which retention
// dropped the oldest, and a third controller's epoch.
void write_single_node_store(const std::string& file) {
  memlend::test::write_sample_v5(file);
  Options o;
  o.events_keep_days = 0;
  o.events_keep_rows = 80000;
  o.events_drop_batch = 100000;
  o.events_drop_every = std::chrono::hours(1);
  auto s = Store::open(file, o);
  BOOST_TEST_REQUIRE(bool(s), why(s));
  Batch many(800);
  for (int i = 0; i < 100000; ++i) {
    EventRecord e;
    e.t_s = 800 + i / 3.0;
    e.event = i % 2 ? "lease_granted" : "unsatisfied";
    e.vm = "VM'" + std::to_string(i % 64);
    e.host = "A";
    e.mib = i;
    e.reason = (i % 1000 ? std::string("it's \xe2\x9c\x93, the ") : std::string("it's \xe2\x9c\x93 a\0b, the ", 19)) +
               std::to_string(i) + "th";
    many.event(e);
  }
  auto o1 = (*s)->commit(std::move(many));
  BOOST_TEST_REQUIRE(o1.ok(), o1.error);
  auto dropped = (*s)->drop_old_events(now_ms());
  BOOST_TEST_REQUIRE(bool(dropped), why(dropped));
  BOOST_TEST_REQUIRE(*dropped > 0u);
  auto o2 = (*s)->commit(std::move(Batch(900).epoch(3)));
  BOOST_TEST_REQUIRE(o2.ok(), o2.error);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_single_node_store_is_imported_into_a_fresh_cluster_once) {
  TempDir dir("replica-import");
  const std::string file = dir.file("memlend.db");
  write_single_node_store(file);
  Snapshot before;
  {
    auto s = Store::open(file);
    BOOST_TEST_REQUIRE(bool(s), why(s));
    auto snap = (*s)->load();
    BOOST_TEST_REQUIRE(bool(snap), why(snap));
    before = *snap;
  }
  BOOST_TEST_REQUIRE(before.epoch == 3u);
  BOOST_TEST_REQUIRE(before.last_event_seq == 100010u);

  Cluster cluster;
  {
    CapturedLog log;
    auto store = open_ok(through(cluster, "memlend", file));
    // The file went aside, and the log says what came in and where it went.
    BOOST_TEST(!file_exists(file));
    BOOST_TEST(file_exists(file + ".imported"));
    BOOST_TEST(!file_exists(file + "-lock"));
    BOOST_TEST_REQUIRE(log.lines.size() == 1u, log.all());
    const std::string& line = log.lines[0];
    BOOST_TEST(contains(line, file + ": imported into the replicated store memlend: 3 hosts, 3 VMs, 3 leases, "
                              "1 mirrors, 1 recommendations, 80000 events (through seq 100010), leadership epoch 3"),
               line);
    BOOST_TEST(contains(line, "the file is now " + file + ".imported"), line);

    // Every row of every table, as the file holds them.
    expect_same_rows(file + ".imported", cluster, "memlend");
    // And an export of the cluster, read a page at a time, holds them all.
    auto exported = store->export_to(dir.file("export.db"));
    BOOST_TEST_REQUIRE(bool(exported), why(exported));
    for (const char* q : {"SELECT count(*) FROM events", "SELECT max(seq) FROM events", "SELECT count(*) FROM leases"})
      BOOST_TEST(memlend::test::raw_value(dir.file("export.db"), q) == memlend::test::raw_value(file + ".imported", q),
                 q);

    auto snap = store->load();
    BOOST_TEST_REQUIRE(bool(snap), why(snap));
    BOOST_TEST(snap->schema_version == before.schema_version);
    BOOST_TEST(snap->clock_s == before.clock_s);
    BOOST_TEST(snap->scenario == before.scenario);
    BOOST_TEST(snap->next_lease_id == before.next_lease_id);
    BOOST_TEST(snap->last_event_seq == before.last_event_seq);
    BOOST_TEST(snap->epoch == before.epoch);
    BOOST_TEST(snap->hosts.size() == before.hosts.size());
    BOOST_TEST(snap->vms.size() == before.vms.size());
    BOOST_TEST_REQUIRE(snap->leases.size() == before.leases.size());
    for (std::size_t i = 0; i < snap->leases.size(); ++i) {
      BOOST_TEST(snap->leases[i].id == before.leases[i].id);
      BOOST_TEST((snap->leases[i].state == before.leases[i].state));
      BOOST_TEST(snap->leases[i].mib == before.leases[i].mib);
    }
    BOOST_TEST(snap->mirrors.size() == before.mirrors.size());
    BOOST_TEST(snap->recommendations.size() == before.recommendations.size());

    // The controller goes on from there: its epoch above the file's, its
    // events numbered on.
    auto raised = store->commit(std::move(Batch(950).epoch(before.epoch + 1)));
    BOOST_TEST(raised.ok(), raised.error);
    EventRecord e;
    e.t_s = 950;
    e.event = "need_detected";
    e.vm = "VM1";
    auto next = store->commit(std::move(Batch(950).event(e)));
    BOOST_TEST_REQUIRE(next.ok(), next.error);
    BOOST_TEST((next.event_seqs == std::vector<std::uint64_t>{before.last_event_seq + 1}));
  }

  // The same file back at its place: the cluster holds a store now, so it
  // is left alone, and said to be.
  std::filesystem::copy_file(file + ".imported", file);
  std::string bytes = memlend::test::read_file(file);
  {
    CapturedLog log;
    auto store = open_ok(through(cluster, "memlend", file));
    BOOST_TEST_REQUIRE(log.lines.size() == 1u, log.all());
    BOOST_TEST(contains(log.lines[0], file + ": not imported"), log.lines[0]);
    BOOST_TEST(contains(log.lines[0], "memlend state --db " + file), log.lines[0]);
    BOOST_TEST(memlend::test::read_file(file) == bytes);
    auto snap = store->load();
    BOOST_TEST_REQUIRE(bool(snap), why(snap));
    BOOST_TEST(snap->last_event_seq == before.last_event_seq + 1);
    BOOST_TEST(snap->epoch == before.epoch + 1);
  }
  int aside = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir.path)) {
    std::string name = f.path().filename().string();
    aside += name == "memlend.db.imported" || name.rfind("memlend.db.imported-1", 0) == 0;
  }
  BOOST_TEST(aside == 1);
}

BOOST_AUTO_TEST_CASE(an_older_file_is_migrated_first_and_a_written_cluster_imports_nothing) {
  TempDir dir("replica-import");
  Cluster cluster;

  // A store of schema version 1: migrated (a copy kept beside, as always),
  // then imported.
  const std::string old = dir.file("old.db");
  std::filesystem::copy_file(std::string(MEMLEND_SOURCE_DIR) + "/tests/persistence/fixtures/v1.sqlite", old);
  {
    auto store = open_ok(through(cluster, "from-v1", old));
    BOOST_TEST(store->schema_version() == builtin_migrations().back().to_version);
    BOOST_TEST(file_exists(old + ".v1.bak"));
    BOOST_TEST(file_exists(old + ".imported"));
    auto snap = store->load();
    BOOST_TEST_REQUIRE(bool(snap), why(snap));
    BOOST_TEST(snap->scenario == "sample-v1");
    BOOST_TEST(snap->leases.size() == 2u);
    BOOST_TEST(snap->last_event_seq == 7u);
  }

  // A cluster whose controller already wrote: the file is not even opened.
  {
    auto store = open_ok(through(cluster, "taken"));
    auto o = store->commit(std::move(Batch(5).scenario("the cluster's own")));
    BOOST_TEST_REQUIRE(o.ok(), o.error);
  }
  const std::string file = dir.file("memlend.db");
  memlend::test::write_sample_v5(file);
  std::string bytes = memlend::test::read_file(file);
  CapturedLog log;
  auto store = open_ok(through(cluster, "taken", file));
  auto snap = store->load();
  BOOST_TEST_REQUIRE(bool(snap), why(snap));
  BOOST_TEST(snap->scenario == "the cluster's own");
  BOOST_TEST(snap->hosts.empty());
  BOOST_TEST(snap->last_event_seq == 0u);
  BOOST_TEST(memlend::test::read_file(file) == bytes);
  BOOST_TEST(!file_exists(file + ".imported"));
  BOOST_TEST_REQUIRE(log.lines.size() == 1u, log.all());
  BOOST_TEST(contains(log.lines[0], "already holds a controller's state"), log.lines[0]);
}

BOOST_AUTO_TEST_CASE(a_file_that_is_no_good_store_is_refused_and_the_cluster_stays_fresh) {
  TempDir dir("replica-import");
  Cluster cluster;
  auto refused = [&](const std::string& file, const std::string& what) {
    BOOST_TEST_INFO("file " << file);
    std::string bytes = memlend::test::read_file(file);
    auto s = Store::open_replicated(through(cluster, "memlend", file));
    BOOST_TEST_REQUIRE(!s);
    const std::string& m = s.error().message;
    BOOST_TEST((s.error().code == memlend::ErrorCode::invalid_input), m);
    BOOST_TEST(m.rfind(file + ":", 0) == 0u, m);
    BOOST_TEST(contains(m, what), m);
    BOOST_TEST(contains(m, "nothing was imported"), m);
    BOOST_TEST(m.find('\n') == std::string::npos, m);
    BOOST_TEST(memlend::test::read_file(file) == bytes);
    BOOST_TEST(!file_exists(file + ".imported"));
    // No controller's state: a reader finds it empty.
    Options ro;
    ro.access = Access::read_only;
    auto reader = Store::open_replicated(through(cluster, "memlend"), ro);
    BOOST_TEST_REQUIRE(!reader);
    BOOST_TEST(contains(reader.error().message, "empty"), reader.error().message);
  };

  const std::string garbage = dir.file("garbage.db");
  memlend::test::write_file(garbage, std::string(8192, 'x'));
  refused(garbage, "not an SQLite database");

  const std::string foreign = dir.file("foreign.db");
  memlend::test::raw_sql(foreign, "CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('mine')");
  refused(foreign, "not memlend's");

  const std::string newer = dir.file("newer.db");
  memlend::test::write_sample_v5(newer);
  memlend::test::raw_sql(newer, "PRAGMA user_version = 99");
  refused(newer, "written by a newer memlend");

  const std::string damaged = dir.file("damaged.db");
  memlend::test::write_sample_v5(damaged);
  auto root = std::stoul(memlend::test::raw_value(damaged, "SELECT rootpage FROM sqlite_schema WHERE name = 'leases'"));
  auto page = std::stoul(memlend::test::raw_value(damaged, "PRAGMA page_size"));
  std::string bytes = memlend::test::read_file(damaged);
  for (std::size_t i = 0; i < 8; ++i) bytes[(root - 1) * page + i] = static_cast<char>(0xff);
  memlend::test::write_file(damaged, bytes);
  refused(damaged, "damaged");

  // A single-node controller still runs on it.
  const std::string busy = dir.file("busy.db");
  memlend::test::write_sample_v5(busy);
  {
    auto held = Store::open(busy);
    BOOST_TEST_REQUIRE(bool(held), why(held));
    refused(busy, "in use by another memlend process");
  }

  // Once the file is good, the same cluster imports it.
  auto store = open_ok(through(cluster, "memlend", busy));
  BOOST_TEST(file_exists(busy + ".imported"));
  auto snap = store->load();
  BOOST_TEST_REQUIRE(bool(snap), why(snap));
  BOOST_TEST(snap->epoch == 2u);
}

BOOST_AUTO_TEST_CASE(what_an_import_that_stopped_halfway_left_is_never_a_store) {
  TempDir dir("replica-import");
  Cluster cluster;
  // The rows of the first transactions of an import, and not its last: the
  // controller row is as the migrations left it.
  auto halfway = [&](const std::string& database) {
    open_ok(through(cluster, database)).reset();
    Client c = must(connect_leader(cluster.addresses(), database, election_bound), "leader");
    must(c.exec("PRAGMA foreign_keys = OFF"), "foreign keys");
    must(c.exec("BEGIN"), "begin");
    for (int i = 1; i <= 300; ++i)
      must(c.exec("INSERT INTO events (seq, t_s, event, recorded_unix_ms) VALUES (?, 1.5, 'unsatisfied', 1)",
                  {memlend::replica::Value{std::int64_t{i}}}),
           "event");
    must(c.exec("INSERT INTO leases VALUES (7, 0, 1, 0, 64, 'active', 'tcp', '', 1, 1, 1, 1, 1)"), "lease");
    must(c.exec("COMMIT"), "commit");
  };

  halfway("no-file");
  Options ro;
  ro.access = Access::read_only;
  auto reader = Store::open_replicated(through(cluster, "no-file"), ro);
  BOOST_TEST_REQUIRE(!reader);
  BOOST_TEST(contains(reader.error().message, "empty"), reader.error().message);
  {
    // A controller without the file starts on an empty store.
    CapturedLog log;
    auto store = open_ok(through(cluster, "no-file", dir.file("absent.db")));
    BOOST_TEST_REQUIRE(log.lines.size() == 1u, log.all());
    BOOST_TEST(contains(log.lines[0], "did not finish; it was cleared"), log.lines[0]);
    auto snap = store->load();
    BOOST_TEST_REQUIRE(bool(snap), why(snap));
    BOOST_TEST(snap->fresh());
    BOOST_TEST(snap->next_lease_id == 1u);
    auto o = store->commit(std::move(Batch(1).event(EventRecord{0, 1, "unsatisfied", "", "", "", std::nullopt, ""})));
    BOOST_TEST_REQUIRE(o.ok(), o.error);
    BOOST_TEST((o.event_seqs == std::vector<std::uint64_t>{1}));
  }

  // With the file, the import starts over.
  halfway("with-file");
  const std::string file = dir.file("memlend.db");
  write_single_node_store(file);
  auto store = open_ok(through(cluster, "with-file", file));
  expect_same_rows(file + ".imported", cluster, "with-file");
}
