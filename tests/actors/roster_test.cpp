// The controller's world grows while it runs: a host that joins gets an id,
// an actor and a place in the planner's view, and lends like any other; a VM
// first seen gets the same. Ids are never reused.
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"

using namespace memlend;
using memlend::test::ControllerFixture;

namespace {

// A has nothing to lend it and no other host: VM2's growth at t=15 is
// unsatisfied unless a host joins.
const char* alone = R"({
  "settings": { "detect_samples": 3, "sample_period_s": 10 },
  "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 32000 } ],
  "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 } ],
  "events": [ { "at_s": 15, "vm": "VM2", "memory_mib": 65536 } ]
})";

HostFacts big_b() {
  HostFacts b;
  b.name = "B";
  b.memory_mib = 131072;
  b.cpu_mhz = 8000;
  return b;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(roster)

BOOST_AUTO_TEST_CASE(a_host_that_joins_lends_to_a_vm_that_had_no_donor) {
  ControllerFixture f(alone);
  BOOST_TEST(f.ask<std::uint32_t>(f.sup, atom::admit::value, big_b()) == 1u);
  BOOST_TEST(static_cast<bool>(f.child(ChildKind::host, 1)));
  auto v = f.view();
  BOOST_TEST_REQUIRE(v.hosts.size() == 2u);
  BOOST_TEST(v.hosts[1].name == "B");
  BOOST_TEST(v.hosts[1].lendable_mib == 131072);
  f.run_until(40);
  auto granted = f.named("lease_granted");
  BOOST_TEST_REQUIRE(granted.size() == 1u);
  BOOST_TEST(granted[0].donor == "B");
  BOOST_TEST(granted[0].mib == 49152);
  // The donor's own ledger, kept by the actor spawned for it, agrees.
  auto ledger = f.ask<HostCheckpoint>(caf::actor_cast<host_actor>(f.child(ChildKind::host, 1)), atom::get::value);
  BOOST_TEST(ledger.lease_mib == std::vector<std::int64_t>{49152});
}

// The VM's need does not change when B joins: it is the VM's asking again,
// now and then, that finds B. Said once while nothing changes.
BOOST_AUTO_TEST_CASE(a_vm_nobody_could_help_is_lent_to_by_a_host_that_joins_later) {
  ControllerFixture f(alone);
  f.run_until(100);
  BOOST_TEST(f.named("unsatisfied").size() == 1u);
  BOOST_TEST(f.named("lease_granted").empty());
  BOOST_TEST(f.ask<std::uint32_t>(f.sup, atom::admit::value, big_b()) == 1u);
  f.run_until(160);
  auto granted = f.named("lease_granted");
  BOOST_TEST_REQUIRE(granted.size() == 1u);
  BOOST_TEST(granted[0].donor == "B");
  BOOST_TEST(granted[0].t_s <= 100 + 3 * 10 + 10);
  BOOST_TEST(f.named("unsatisfied").size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_host_that_rejoins_keeps_its_id_and_takes_its_new_facts) {
  ControllerFixture f(alone);
  HostFacts b = big_b();
  BOOST_TEST(f.ask<std::uint32_t>(f.sup, atom::admit::value, b) == 1u);
  b.memory_mib = 8192;
  BOOST_TEST(f.ask<std::uint32_t>(f.sup, atom::admit::value, b) == 1u);
  HostFacts a;
  a.name = "A";
  a.memory_mib = 32768;
  a.cpu_mhz = 32000;
  BOOST_TEST(f.ask<std::uint32_t>(f.sup, atom::admit::value, a) == 0u);
  auto v = f.view();
  BOOST_TEST_REQUIRE(v.hosts.size() == 2u);
  BOOST_TEST(v.hosts[1].lendable_mib == 8192);
  // Its actor, which has the last word on a reservation, knows it too.
  auto donor = caf::actor_cast<host_actor>(f.child(ChildKind::host, 1));
  BOOST_TEST(!f.ask<bool>(donor, atom::reserve::value, std::uint64_t{90}, std::int64_t{8193}));
  BOOST_TEST(f.ask<bool>(donor, atom::reserve::value, std::uint64_t{91}, std::int64_t{8192}));
  BOOST_TEST(v.hosts[0].lendable_mib == 32768 - 16384);
}

BOOST_AUTO_TEST_CASE(a_vm_first_seen_is_appended_once_on_a_known_host) {
  ControllerFixture f(alone);
  BOOST_TEST(f.ask<std::uint32_t>(f.sup, atom::admit::value, big_b()) == 1u);
  BOOST_TEST(f.ask<std::uint32_t>(f.sup, atom::admit::value, std::string("web"), std::uint32_t{1}) == 1u);
  // Seen again (or on another host after someone else migrated it): the same VM.
  BOOST_TEST(f.ask<std::uint32_t>(f.sup, atom::admit::value, std::string("web"), std::uint32_t{0}) == 1u);
  BOOST_TEST(f.ask<std::uint32_t>(f.sup, atom::admit::value, std::string("VM2"), std::uint32_t{1}) == 0u);
  BOOST_CHECK_THROW(f.ask<std::uint32_t>(f.sup, atom::admit::value, std::string("ghost"), std::uint32_t{7}),
                    std::runtime_error);
  BOOST_TEST(static_cast<bool>(f.child(ChildKind::vm, 1)));
  BOOST_TEST(!f.child(ChildKind::vm, 2));
  auto v = f.view();
  BOOST_TEST_REQUIRE(v.vms.size() == 2u);
  BOOST_TEST(v.vms[1].name == "web");
  BOOST_TEST(v.vms[1].host == "B");
  BOOST_TEST(v.vms[1].demand_mib == 0);
  // The new VM's actor runs: the one whose growth is sampled still gets B's memory.
  f.run_until(40);
  BOOST_TEST(f.named("lease_granted").size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
