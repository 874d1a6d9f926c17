// Event retention: the oldest events go, by age or beyond a number of rows,
// in bounded batches; what is kept stays numbered without a gap, and the
// numbering goes on from the newest. Real SQLite files.
#define BOOST_TEST_MODULE persistence_retention
#include <boost/test/unit_test.hpp>

#include "persistence/store.hpp"
#include "tests/persistence/support.hpp"

#include <chrono>
#include <thread>

using namespace memlend::store;
using memlend::test::raw_sql;
using memlend::test::raw_value;
using memlend::test::TempDir;

namespace {

constexpr std::int64_t day_ms = 86400000;

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// The writer's own passes an hour apart: a test's explicit passes are the only ones.
Options keep(std::uint32_t days, std::uint64_t rows, std::size_t batch) {
  Options o;
  o.events_keep_days = days;
  o.events_keep_rows = rows;
  o.events_drop_batch = batch;
  o.events_drop_every = std::chrono::hours(1);
  return o;
}

Batch event_at(double t) {
  Batch b(t);
  b.event(EventRecord{0, t, "need_detected", "VM1", "A", "", 1024, ""});
  return b;
}

std::vector<std::uint64_t> kept(const Store& s) {
  std::vector<std::uint64_t> out;
  auto events = s.events();
  BOOST_TEST_REQUIRE(bool(events), (events ? "" : events.error().message));
  for (const auto& e : *events) out.push_back(e.seq);
  return out;
}

// Events 1..n of a run long ago, recorded at `recorded_ms`, written behind the store's back.
void write_old_events(const std::string& path, int n, std::int64_t recorded_ms) {
  for (int i = 1; i <= n; ++i)
    raw_sql(path, "INSERT INTO events (t_s, event, vm, recorded_unix_ms) VALUES (" + std::to_string(i) +
                      ", 'need_detected', 'VM1', " + std::to_string(recorded_ms) + ")");
}

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> out;
  for (auto i = from; i <= to; ++i) out.push_back(i);
  return out;
}

std::uint64_t drop(Store& s, std::int64_t now) {
  auto n = s.drop_old_events(now);
  BOOST_TEST_REQUIRE(bool(n), (n ? "" : n.error().message));
  return *n;
}

}  // namespace

BOOST_AUTO_TEST_CASE(rows_beyond_the_limit_go_oldest_first_in_bounded_batches) {
  TempDir dir("retention");
  std::string path = dir.file("memlend.db");
  auto s = Store::open(path, keep(0, 5, 3));
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  for (int i = 1; i <= 12; ++i) BOOST_TEST_REQUIRE((*s)->commit(event_at(i)).ok());
  const auto now = now_ms();
  BOOST_TEST(drop(**s, now) == 3u);
  BOOST_TEST(drop(**s, now) == 3u);
  BOOST_TEST(drop(**s, now) == 1u);
  BOOST_TEST(drop(**s, now) == 0u);
  BOOST_TEST(kept(**s) == range(8, 12));
  BOOST_TEST(raw_value(path, "SELECT dropped_through FROM event_retention") == "7");
  // Numbering goes on from the newest kept.
  auto o = (*s)->commit(event_at(13));
  BOOST_TEST_REQUIRE(o.ok());
  BOOST_TEST(o.event_seqs == std::vector<std::uint64_t>{13});
  auto snap = (*s)->load();
  BOOST_TEST_REQUIRE(bool(snap));
  BOOST_TEST(snap->last_event_seq == 13u);
}

BOOST_AUTO_TEST_CASE(events_older_than_the_days_kept_go_and_newer_ones_stay) {
  TempDir dir("retention");
  std::string path = dir.file("memlend.db");
  BOOST_TEST_REQUIRE(bool(Store::open(path, keep(0, 0, 100))));
  // Three events of a run forty days ago.
  const auto now = now_ms();
  write_old_events(path, 3, now - 40 * day_ms);
  auto s = Store::open(path, keep(30, 0, 100));
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  for (int i = 4; i <= 6; ++i) BOOST_TEST_REQUIRE((*s)->commit(event_at(i)).ok());
  while (drop(**s, now_ms()) > 0) {
  }
  BOOST_TEST(kept(**s) == range(4, 6));
  // A month on, all of them are old; the newest stays, so numbering goes on.
  BOOST_TEST(drop(**s, now_ms() + 31 * day_ms) == 2u);
  BOOST_TEST(kept(**s) == range(6, 6));
  auto o = (*s)->commit(event_at(7));
  BOOST_TEST(o.event_seqs == std::vector<std::uint64_t>{7});
}

// A support bundle's events: those recorded since a wall-clock time, oldest
// first, the newest when there are more than it takes.
BOOST_AUTO_TEST_CASE(events_since_a_time_are_those_recorded_since_oldest_first) {
  TempDir dir("retention");
  std::string path = dir.file("memlend.db");
  BOOST_TEST_REQUIRE(bool(Store::open(path, keep(0, 0, 100))));
  const auto now = now_ms();
  write_old_events(path, 2, now - 2 * day_ms);
  auto s = Store::open(path, keep(0, 0, 100));
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  for (int i = 3; i <= 5; ++i) BOOST_TEST_REQUIRE((*s)->commit(event_at(i)).ok());
  auto seqs = [&](std::int64_t since, std::size_t limit) {
    auto t = (*s)->events_since(since, limit);
    BOOST_TEST_REQUIRE(bool(t), (t ? "" : t.error().message));
    BOOST_TEST(t->columns.back() == "reason");
    std::vector<std::uint64_t> out;
    for (const auto& row : t->rows) out.push_back(static_cast<std::uint64_t>(std::get<std::int64_t>(row[0])));
    return out;
  };
  BOOST_TEST(seqs(now - 3600000, 100) == range(3, 5));
  BOOST_TEST(seqs(now - 3 * day_ms, 100) == range(1, 5));
  BOOST_TEST(seqs(now - 3600000, 2) == range(4, 5));
  BOOST_TEST(seqs(now + day_ms, 100).empty());
}

BOOST_AUTO_TEST_CASE(no_limit_keeps_everything) {
  TempDir dir("retention");
  std::string path = dir.file("memlend.db");
  auto s = Store::open(path, keep(0, 0, 100));
  BOOST_TEST_REQUIRE(bool(s));
  for (int i = 1; i <= 5; ++i) BOOST_TEST_REQUIRE((*s)->commit(event_at(i)).ok());
  BOOST_TEST(drop(**s, now_ms() + 1000 * day_ms) == 0u);
  BOOST_TEST(kept(**s) == range(1, 5));
}

// Only retention drops events, and only the oldest: the triggers refuse the rest.
BOOST_AUTO_TEST_CASE(nothing_but_the_oldest_events_can_be_deleted) {
  TempDir dir("retention");
  std::string path = dir.file("memlend.db");
  {
    auto s = Store::open(path, keep(0, 3, 100));
    BOOST_TEST_REQUIRE(bool(s));
    for (int i = 1; i <= 6; ++i) BOOST_TEST_REQUIRE((*s)->commit(event_at(i)).ok());
    BOOST_TEST(drop(**s, now_ms()) == 3u);
  }
  BOOST_CHECK_THROW(raw_sql(path, "DELETE FROM events WHERE seq = 5"), std::runtime_error);
  BOOST_CHECK_THROW(raw_sql(path, "UPDATE event_retention SET dropped_through = 1"), std::runtime_error);
  BOOST_CHECK_THROW(raw_sql(path, "UPDATE events SET reason = 'made up' WHERE seq = 6"), std::runtime_error);
  BOOST_TEST(raw_value(path, "SELECT COUNT(*) FROM events") == "3");
}

// The writer makes its passes by itself, between group commits.
BOOST_AUTO_TEST_CASE(the_writer_drops_old_events_by_itself, *boost::unit_test::timeout(60)) {
  TempDir dir("retention");
  std::string path = dir.file("memlend.db");
  Options o = keep(0, 3, 2);
  o.events_drop_every = std::chrono::milliseconds(20);
  auto s = Store::open(path, o);
  BOOST_TEST_REQUIRE(bool(s));
  for (int i = 1; i <= 10; ++i) BOOST_TEST_REQUIRE((*s)->commit(event_at(i)).ok());
  // Bounded wait for the passes; never a timing assertion.
  for (int i = 0; i < 500 && kept(**s).size() > 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  BOOST_TEST(kept(**s) == range(8, 10));
}
