// The view grows at run time: hosts join, VMs appear in telemetry. A view
// grown one host or VM at a time must decide exactly as one built from a
// scenario that listed them all, and ids once given never move.
#include <boost/test/unit_test.hpp>

#include "policy/cluster.hpp"
#include "tests/policy/builders.hpp"

using namespace memlend::policy;
using namespace memlend::test;

namespace {

// A decision as text, so that two views' decisions compare in one line.
template <class C>
std::string said(const C& c, const Decision& d) {
  return std::string(to_string(d.kind)) + " local " + std::to_string(d.local_mib) + " leases [" + leases(c, d) +
         "] target " + name_of(c, d.target);
}

template <class C>
void same_view(const C& grown, const C& built) {
  BOOST_TEST_REQUIRE(grown.hosts().size() == built.hosts().size());
  BOOST_TEST_REQUIRE(grown.vm_count() == built.vm_count());
  for (HostId h = 0; h < built.hosts().size(); ++h) {
    BOOST_TEST(grown.hosts()[h].name == built.hosts()[h].name);
    BOOST_TEST(grown.free_local(h) == built.free_local(h));
    BOOST_TEST(grown.lendable(h) == built.lendable(h));
    BOOST_TEST(grown.cpu_free(h) == built.cpu_free(h));
  }
  for (VmId v = 0; v < built.vm_count(); ++v) {
    BOOST_TEST(grown.vm_names()[v] == built.vm_names()[v]);
    BOOST_TEST(grown.vm(v).share_mem == built.vm(v).share_mem);
    BOOST_TEST(said(grown, grown.decide(v)) == said(built, built.decide(v)));
  }
}

ScenarioBuilder two_hosts() {
  ScenarioBuilder b;
  b.host("H", 16 * GiB, 8 * GHz);
  b.host("D", 32 * GiB, 8 * GHz);
  b.vm("V1", "H", 12 * GiB, 2 * GHz);
  b.vm("V2", "H", 10 * GiB, 2 * GHz);
  return b;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(roster)

// A larger host joins: it rescales the scores and becomes the donor and the
// migration target a view that always had it would pick.
template <class C>
void joined_host_decides_as_if_listed() {
  ScenarioBuilder b = two_hosts();
  C grown(b.s);
  Host big;
  big.name = "B";
  big.memory_mib = 128 * GiB;
  big.cpu_mhz = 32 * GHz;
  HostId id = grown.add_host(big);
  BOOST_TEST(id == 2u);
  b.s.hosts.push_back(big);
  C built(b.s);
  same_view(grown, built);
}

BOOST_AUTO_TEST_CASE(a_joined_host_decides_as_if_it_was_listed) {
  joined_host_decides_as_if_listed<Cluster>();
  joined_host_decides_as_if_listed<ScanCluster>();
}

// A VM seen first in telemetry takes what its host has left, as the
// scenario's VMs did in order at the start, and borrows the rest.
BOOST_AUTO_TEST_CASE(a_new_vm_is_served_from_what_its_host_has_left) {
  ScenarioBuilder b = two_hosts();
  Cluster grown(b.s);
  Vm v3;
  v3.name = "V3";
  v3.host = 1;
  v3.memory_mib = 40 * GiB;
  v3.cpu_mhz = 1 * GHz;
  v3.remote.push_back({0, 4 * GiB});  // not a lease the planner made: ignored
  VmId id = grown.add_vm(v3);
  BOOST_TEST(id == 2u);
  BOOST_TEST(grown.vm(id).share_mem == 32 * GiB);
  BOOST_TEST(grown.vm(id).borrowed.empty());
  BOOST_TEST(grown.host_state(0).lent == 0);
  v3.remote.clear();
  b.s.vms.push_back(v3);
  Cluster built(b.s);
  same_view(grown, built);
  BOOST_TEST(grown.need(id).first == 8 * GiB);
}

// Hosts and VMs interleaved, in a fabric of their own too: ids are given in
// order of arrival and never reused, and the view is the one listing them.
BOOST_AUTO_TEST_CASE(arrivals_in_any_order_keep_their_ids) {
  ScenarioBuilder b;
  b.host("A", 8 * GiB, 4 * GHz);
  Cluster grown(b.s);
  Host rack2;
  rack2.name = "R";
  rack2.memory_mib = 64 * GiB;
  rack2.cpu_mhz = 16 * GHz;
  rack2.fabric = "rack2";
  Host c;
  c.name = "C";
  c.memory_mib = 48 * GiB;
  c.cpu_mhz = 8 * GHz;
  Vm va{"VA", 0, 12 * GiB, 1 * GHz, {}, 0, std::nullopt};
  Vm vr{"VR", 1, 70 * GiB, 1 * GHz, {}, 0, std::nullopt};
  BOOST_TEST(grown.add_vm(va) == 0u);
  BOOST_TEST(grown.add_host(rack2) == 1u);
  BOOST_TEST(grown.add_vm(vr) == 1u);
  BOOST_TEST(grown.add_host(c) == 2u);
  b.s.hosts.push_back(rack2);
  b.s.hosts.push_back(c);
  b.s.vms.push_back(va);
  b.s.vms.push_back(vr);
  Cluster built(b.s);
  same_view(grown, built);
  // VA borrows from C, its fabric's donor, never from R in another fabric.
  BOOST_TEST(leases(grown, grown.decide(0)) == "C 4096");
  // VR has no donor in rack2 but itself.
  BOOST_TEST(grown.decide(1).leases.empty());
}

// An agent that rejoins with more memory: the host's VMs keep their shares,
// the new room is free, and a host that moved fabric lends only there.
BOOST_AUTO_TEST_CASE(a_rejoining_host_updates_its_facts) {
  ScenarioBuilder b = two_hosts();
  Cluster c(b.s);
  BOOST_TEST(c.need(1).first == 6 * GiB);
  Host facts = c.hosts()[0];
  facts.name = "ignored";
  facts.memory_mib = 32 * GiB;
  c.update_host(0, facts);
  BOOST_TEST(c.hosts()[0].name == "H");
  BOOST_TEST(c.vm(1).share_mem == 4 * GiB);  // as it was: the view does not grow a VM unasked
  BOOST_TEST(c.free_local(0) == 16 * GiB);
  BOOST_TEST(c.need(1).first == 0);
  facts = c.hosts()[1];
  facts.fabric = "elsewhere";
  c.update_host(1, facts);
  BOOST_TEST(c.lendable(1) == 32 * GiB);
  facts = c.hosts()[0];
  facts.memory_mib = 4 * GiB;  // less than its VMs use: nothing free, nothing negative
  c.update_host(0, facts);
  BOOST_TEST(c.free_local(0) == 0);
  Decision d = c.decide(1);
  BOOST_TEST(d.leases.empty());
}

BOOST_AUTO_TEST_SUITE_END()
