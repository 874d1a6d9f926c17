// The controller killed with SIGKILL at 50 random moments (some of them in the
// middle of a reservation or a commit) and restarted on the same database
// each time. After every kill the store must hold a state that makes sense,
// and the run that was killed 50 times must end where an uninterrupted run
// of the same scenario ends.
#define BOOST_TEST_MODULE crash
#include <boost/test/unit_test.hpp>

#include "persistence/store.hpp"
#include "tests/support/child.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <tuple>

using namespace memlend;
using memlend::test::make_temp_dir;

namespace {

const std::string bin = MEMLEND_BINARY;

// The demo's story, at a speed where a run lasts about half a minute.
std::vector<std::string> run_args(const std::string& dir) {
  return {bin,     "run",   "--speed",      "50",   "--for",        "1800",        "--quiet",
          "--db",  dir + "/memlend.db",     "--data-path", "off", "--events-out", dir + "/events.jsonl",
          "--datastore", dir + "/datastore"};
}

store::Snapshot snapshot(const std::string& db) {
  store::Options o;
  o.access = store::Access::read_only;
  auto s = store::Store::open(db, o);
  BOOST_TEST_REQUIRE(static_cast<bool>(s), (s ? "" : s.error().message));
  auto snap = (*s)->load();
  BOOST_TEST_REQUIRE(static_cast<bool>(snap));
  return *snap;
}

std::vector<store::EventRecord> events(const std::string& db) {
  store::Options o;
  o.access = store::Access::read_only;
  auto s = store::Store::open(db, o);
  BOOST_TEST_REQUIRE(static_cast<bool>(s));
  auto e = (*s)->events();
  BOOST_TEST_REQUIRE(static_cast<bool>(e));
  return *e;
}

// What must hold in the store whenever the controller stops, however it stops.
void check_invariants(const std::string& db, const std::string& when) {
  store::Snapshot s = snapshot(db);
  std::map<std::uint32_t, std::int64_t> lent;
  std::set<std::uint64_t> ids;
  for (const auto& l : s.leases) {
    BOOST_TEST(ids.insert(l.id).second, when << ": lease " << l.id << " twice");
    BOOST_TEST(l.donor < s.hosts.size(), when);
    BOOST_TEST((l.donor != l.recipient), when << ": lease " << l.id << " lent by its own host");
    if (l.state == store::LeaseState::active) lent[l.donor] += l.mib;
  }
  // No donor lends what it does not have, and the lending view adds up.
  for (const auto& h : s.hosts) {
    BOOST_TEST(lent[h.id] <= h.memory_mib - h.reserved_mib, when << ": " << h.name << " over-lends");
  }
  // Every active lease has its VM's mirror.
  std::set<std::uint32_t> mirrored;
  for (const auto& m : s.mirrors)
    if (m.state != store::MirrorState::deleted) mirrored.insert(m.vm);
  for (const auto& l : s.leases)
    if (l.state == store::LeaseState::active)
      BOOST_TEST(mirrored.count(l.vm) == 1u, when << ": lease " << l.id << " has no mirror");
  // The event log: numbered 1, 2, 3 ... with no gap, and nothing recorded twice.
  auto ev = events(db);
  std::set<std::tuple<std::string, std::string, std::string, std::string, std::int64_t, long>> seen;
  for (std::size_t i = 0; i < ev.size(); ++i) {
    BOOST_TEST(ev[i].seq == i + 1, when << ": event " << i << " has seq " << ev[i].seq);
    if (ev[i].event == "need_detected" || ev[i].event == "unsatisfied") continue;  // may recur
    auto key = std::make_tuple(ev[i].event, ev[i].vm, ev[i].host, ev[i].donor, ev[i].mib.value_or(-1),
                               static_cast<long>(ev[i].t_s * 1000));
    BOOST_TEST(seen.insert(key).second, when << ": " << ev[i].event << " " << ev[i].vm << " recorded twice");
  }
}

// The end state a support engineer compares: leases, mirrors, recommendations.
std::string final_state(const std::string& db) {
  store::Snapshot s = snapshot(db);
  std::multiset<std::string> parts;
  for (const auto& l : s.leases)
    if (l.state == store::LeaseState::active || l.state == store::LeaseState::failed)
      parts.insert("lease " + std::to_string(l.vm) + " from " + std::to_string(l.donor) + " " +
                   std::to_string(l.mib) + " " + std::string(store::to_string(l.state)));
  for (const auto& m : s.mirrors)
    if (m.state != store::MirrorState::deleted)
      parts.insert("mirror " + std::to_string(m.vm) + " " + std::to_string(m.bytes));
  for (const auto& r : s.recommendations)
    parts.insert("recommend " + std::to_string(r.vm) + " to " + std::to_string(r.target));
  for (const auto& h : s.hosts) parts.insert("host " + h.name + (h.up ? " up" : " down"));
  std::ostringstream out;
  for (const auto& p : parts) out << p << '\n';
  return out.str();
}

struct TempDir {
  std::string path = make_temp_dir("crash");
  ~TempDir() {
    std::error_code ec;
    if (!std::getenv("MEMLEND_KEEP_TEST_DIR")) std::filesystem::remove_all(path, ec);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(fifty_kills_lose_nothing_and_end_where_an_uninterrupted_run_ends) {
  TempDir calm, crashed;
  // The reference: one run, never interrupted.
  BOOST_TEST_REQUIRE(test::Child(run_args(calm.path)).wait(std::chrono::seconds(240)) == 0);
  check_invariants(calm.path + "/memlend.db", "uninterrupted run");
  std::string expected = final_state(calm.path + "/memlend.db");

  std::mt19937 rng(20261122);
  std::uniform_int_distribution<int> after_ms(20, 450);
  int kills = 0;
  int status = -1;
  while (kills < 50) {
    // The kill is the deadline of the wait.
    status = test::Child(run_args(crashed.path)).wait(std::chrono::milliseconds(after_ms(rng)));
    if (status != test::Child::killed_at_deadline) break;  // it ended before this kill came
    ++kills;
    check_invariants(crashed.path + "/memlend.db", "after kill " + std::to_string(kills));
  }
  BOOST_TEST(kills == 50, "the run ended after only " << kills << " kills: make them come sooner");
  BOOST_TEST(status == test::Child::killed_at_deadline);
  // The last start runs to the end.
  BOOST_TEST_REQUIRE(test::Child(run_args(crashed.path)).wait(std::chrono::seconds(240)) == 0);
  check_invariants(crashed.path + "/memlend.db", "the end");
  BOOST_TEST(final_state(crashed.path + "/memlend.db") == expected);
  // The event log in --events-out holds exactly what the store holds.
  std::ifstream in(crashed.path + "/events.jsonl");
  std::size_t lines = 0;
  for (std::string l; std::getline(in, l);) ++lines;
  BOOST_TEST(lines == events(crashed.path + "/memlend.db").size());
}
