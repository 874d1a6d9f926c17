#define BOOST_TEST_MODULE replica_store
#include <boost/test/unit_test.hpp>

// memlend's store kept by a dqlite cluster of three nodes, each a process of
// its own: the same batches, rules and reads as on a file, every batch
// durable on a quorum, and nothing acknowledged lost when the leader dies.

#include "persistence/schema.hpp"
#include "persistence/store.hpp"
#include "tests/replica/cluster.hpp"
#include "tests/replica/store_support.hpp"

#include <filesystem>
#include <future>
#include <string>
#include <vector>

using namespace memlend::store;
using namespace memlend::test::replica_cluster;
using namespace memlend::test::replica_store;

namespace {

Replica through(const std::vector<std::string>& members) {
  Replica r;
  r.members = members;
  r.database = "memlend";
  r.find_leader = election_bound;
  return r;
}

HostRecord host(std::uint32_t id) {
  HostRecord r;
  r.id = id;
  r.name = std::string(1, static_cast<char>('A' + id));
  r.memory_mib = 65536;
  r.cpu_mhz = 16000;
  return r;
}

VmRecord vm(std::uint32_t id, std::uint32_t on) {
  VmRecord r;
  r.id = id;
  r.name = "VM" + std::to_string(id);
  r.host = on;
  r.memory_mib = 8192;
  return r;
}

LeaseRecord lease(std::uint64_t id, LeaseState state) {
  LeaseRecord l;
  l.id = id;
  l.vm = 0;
  l.donor = 1;
  l.recipient = 0;
  l.mib = 1024;
  l.state = state;
  return l;
}

EventRecord event(const char* name, double t) {
  EventRecord e;
  e.t_s = t;
  e.event = name;
  e.vm = "VM0";
  e.host = "A";
  e.mib = 1024;
  return e;
}

void commit_ok(Store& s, Batch b) {
  auto o = s.commit(std::move(b));
  BOOST_TEST_REQUIRE(o.ok(), o.error);
}

// Hosts A, B, C, VM0 on A, and lease 1 of 1 GiB from B, active.
void fill(Store& s) {
  Batch b(1);
  for (std::uint32_t h = 0; h < 3; ++h) b.put(host(h));
  b.put(vm(0, 0));
  commit_ok(s, std::move(b));
  Batch reserve(2);
  reserve.put(lease(1, LeaseState::reserving));
  commit_ok(s, std::move(reserve));
  Batch grant(3);
  grant.put(lease(1, LeaseState::active)).event(event("lease_granted", 3));
  commit_ok(s, std::move(grant));
}

void expect_filled(const Snapshot& snap) {
  BOOST_TEST(snap.hosts.size() == 3u);
  BOOST_TEST_REQUIRE(snap.vms.size() == 1u);
  BOOST_TEST(snap.vms[0].name == "VM0");
  BOOST_TEST_REQUIRE(snap.leases.size() == 1u);
  BOOST_TEST((snap.leases[0].state == LeaseState::active));
  BOOST_TEST(snap.next_lease_id == 2u);
  BOOST_TEST(snap.last_event_seq == 1u);
  BOOST_TEST(snap.clock_s == 3.0);
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_store_keeps_its_rules_and_reads_on_the_cluster) {
  Cluster cluster;
  // Found through a follower: the store speaks to the leader.
  auto store = open_ok(through({cluster.address(3)}));
  BOOST_TEST(store->schema_version() == builtin_migrations().back().to_version);
  fill(*store);

  // A step a lease may not take is refused alone: the batch beside it in
  // the same group commit is durable.
  std::promise<Outcome> bad_p, good_p;
  store->submit(Batch(4).put(lease(1, LeaseState::reserving)), [&](const Outcome& o) { bad_p.set_value(o); });
  store->submit(Batch(5).event(event("unsatisfied", 5)), [&](const Outcome& o) { good_p.set_value(o); });
  Outcome bad = bad_p.get_future().get(), good = good_p.get_future().get();
  BOOST_TEST((bad.status == Status::refused));
  BOOST_TEST(bad.error.find("active → reserving is not a step") != std::string::npos, bad.error);
  BOOST_TEST(good.ok(), good.error);
  BOOST_TEST((good.event_seqs == std::vector<std::uint64_t>{2}));

  auto snap = store->load();
  BOOST_TEST_REQUIRE(bool(snap), why(snap));
  BOOST_TEST(snap->last_event_seq == 2u);
  auto leases = store->read(View::leases);
  BOOST_TEST_REQUIRE(bool(leases), why(leases));
  BOOST_TEST(leases->rows.size() == 1u);
  auto events = store->events();
  BOOST_TEST_REQUIRE(bool(events), why(events));
  BOOST_TEST_REQUIRE(events->size() == 2u);
  BOOST_TEST((*events)[0].event == "lease_granted");

  // Support tooling reads it through any member, and exports a plain file.
  auto reader = open_ok(through({cluster.address(2)}), Access::read_only);
  auto hosts = reader->read(View::hosts);
  BOOST_TEST_REQUIRE(bool(hosts), why(hosts));
  BOOST_TEST(hosts->rows.size() == 3u);
  auto dir = memlend::test::make_temp_dir("replica-export");
  std::string file = dir + "/copy.db";
  auto exported = reader->export_to(file);
  BOOST_TEST_REQUIRE(bool(exported), why(exported));
  BOOST_TEST(!reader->export_to(file), "an export never replaces a file");
  {
    Options o;
    o.access = Access::read_only;
    auto copy = Store::open(file, o);
    BOOST_TEST_REQUIRE(bool(copy), why(copy));
    auto copied = (*copy)->load();
    BOOST_TEST_REQUIRE(bool(copied), why(copied));
    BOOST_TEST(copied->last_event_seq == 2u);
    BOOST_TEST(copied->leases.size() == 1u);
    auto view = (*copy)->read(View::vms);
    BOOST_TEST_REQUIRE(bool(view), why(view));
    BOOST_TEST(view->rows.size() == 1u);
  }
  std::filesystem::remove_all(dir);
}

BOOST_AUTO_TEST_CASE(nothing_acknowledged_is_lost_when_the_leader_dies) {
  Cluster cluster;
  {
    auto store = open_ok(through(cluster.addresses()));
    fill(*store);
    cluster.kill9(1);
    // The old leader's connection is gone: the store says so, and records nothing.
    auto o = store->commit(Batch(4).event(event("unsatisfied", 4)));
    BOOST_TEST(!o.ok());
    BOOST_TEST(o.error.find("lost the cluster's leader") != std::string::npos, o.error);
    // It records nothing more: a controller on it ends its term (cmd_run).
    BOOST_TEST(!store->recording());
  }
  auto store = open_ok(through(cluster.addresses()));
  auto snap = store->load();
  BOOST_TEST_REQUIRE(bool(snap), why(snap));
  expect_filled(*snap);
  // The new leader goes on where the old one stopped.
  commit_ok(*store, Batch(5).put(lease(2, LeaseState::reserving)).event(event("unsatisfied", 5)));
  auto after = store->load();
  BOOST_TEST_REQUIRE(bool(after), why(after));
  BOOST_TEST(after->next_lease_id == 3u);
  BOOST_TEST(after->last_event_seq == 2u);
}

BOOST_AUTO_TEST_CASE(an_empty_database_is_not_read_as_a_store) {
  Cluster cluster;
  Options o;
  o.access = Access::read_only;
  auto s = Store::open_replicated(through({cluster.address(1)}), o);
  BOOST_TEST_REQUIRE(!s);
  BOOST_TEST(s.error().message.find("empty") != std::string::npos, s.error().message);
}
