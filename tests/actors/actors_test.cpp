#define BOOST_TEST_MODULE actors
#include <boost/test/unit_test.hpp>

#include "policy/cluster.hpp"
#include "fixture.hpp"

using namespace memlend;
using memlend::test::ControllerFixture;

namespace {

// FIG. 2's cluster; VM2's demand grows at t=15, between samples.
const char* fig2_growth = R"({
  "settings": { "detect_samples": 3, "sample_period_s": 10, "migrate_after_s": 600 },
  "hosts": [ { "name": "A", "memory_mib": 16384,  "cpu_mhz": 32000 },
             { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 },
             { "name": "N", "memory_mib": 16384,  "cpu_mhz": 8000 } ],
  "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 },
           { "name": "VM5", "host": "N", "memory_mib": 12288, "cpu_mhz": 2000 } ],
  "events": [ { "at_s": 15, "vm": "VM2", "memory_mib": 65536 } ]
})";

PlannerView view(ControllerFixture& f) {
  auto planner = f.child(ChildKind::planner, 0);
  return f.ask<PlannerView>(caf::actor_cast<planner_actor>(planner), atom::get::value);
}

}  // namespace

BOOST_AUTO_TEST_CASE(need_is_detected_after_detect_samples_consecutive_samples) {
  ControllerFixture f(fig2_growth);
  f.run_until(39);
  BOOST_TEST(f.named("need_detected").empty());  // samples at 20 and 30 only
  f.run_until(40);
  auto detected = f.named("need_detected");
  BOOST_TEST_REQUIRE(detected.size() == 1u);
  BOOST_TEST(detected[0].t_s == 40.0);
  BOOST_TEST(detected[0].vm == "VM2");
  BOOST_TEST(detected[0].mib == 49152);
  auto granted = f.named("lease_granted");
  BOOST_TEST_REQUIRE(granted.size() == 1u);
  BOOST_TEST(granted[0].donor == "B");
  BOOST_TEST(granted[0].mib == 49152);
  BOOST_TEST(f.named("mirror_created").size() == 1u);
  BOOST_TEST(std::filesystem::exists(f.datastore / "VM2.mirror"));
}

BOOST_AUTO_TEST_CASE(a_spike_shorter_than_detect_samples_lends_nothing) {
  const char* spike = R"({
    "settings": { "detect_samples": 3 },
    "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 32000 },
               { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 } ],
    "events": [ { "at_s": 15, "vm": "VM2", "memory_mib": 65536 },
                { "at_s": 35, "vm": "VM2", "memory_mib": 16384 } ]
  })";
  ControllerFixture f(spike);
  f.run_until(200);
  BOOST_TEST(f.named("need_detected").empty());
  BOOST_TEST(f.named("lease_granted").empty());
}

BOOST_AUTO_TEST_CASE(two_needy_vms_are_never_lent_the_same_megabyte) {
  // B can lend 10 GiB; VM1 and VM2 each need 8 GiB more at the same sample.
  const char* race = R"({
    "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 32000 },
               { "name": "B", "memory_mib": 10240, "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM1", "host": "A", "memory_mib": 8192, "cpu_mhz": 1000 },
             { "name": "VM2", "host": "A", "memory_mib": 8192, "cpu_mhz": 1000 } ],
    "events": [ { "at_s": 5, "vm": "VM1", "memory_mib": 16384 },
                { "at_s": 5, "vm": "VM2", "memory_mib": 16384 } ]
  })";
  ControllerFixture f(race);
  f.run_until(100);
  BOOST_TEST(f.named("need_detected").size() == 2u);
  BOOST_TEST(f.named("lease_granted").size() == 1u);
  BOOST_TEST(f.named("unsatisfied").size() == 1u);
  auto v = view(f);
  BOOST_TEST(v.hosts[1].lent_mib == 8192);
  // The donor's own ledger agrees with the planner's view.
  auto ledger = f.ask<HostCheckpoint>(caf::actor_cast<host_actor>(f.child(ChildKind::host, 1)), atom::get::value);
  BOOST_TEST(ledger.lease_mib.size() == 1u);
  BOOST_TEST(ledger.pending_ids.empty());
}

BOOST_AUTO_TEST_CASE(a_crashed_vm_actor_comes_back_with_its_last_state) {
  ControllerFixture f(fig2_growth);
  f.run_until(30);  // two needy samples seen (20, 30)
  auto before = f.child(ChildKind::vm, 0);
  auto cp = f.ask<VmCheckpoint>(caf::actor_cast<vm_actor>(before), atom::get::value);
  BOOST_TEST(cp.need_streak == 2);
  caf::anon_send_exit(before, caf::exit_reason::kill);
  f.run_until(31);  // past the restart backoff
  auto after = f.child(ChildKind::vm, 0);
  BOOST_TEST_REQUIRE(static_cast<bool>(after));
  BOOST_TEST((after != before));
  auto restored = f.ask<VmCheckpoint>(caf::actor_cast<vm_actor>(after), atom::get::value);
  BOOST_TEST(restored.need_streak == 2);
  // The third sample still completes the streak: detection is not delayed.
  f.run_until(40);
  BOOST_TEST_REQUIRE(f.named("need_detected").size() == 1u);
  BOOST_TEST(f.named("need_detected")[0].t_s == 40.0);
}

BOOST_AUTO_TEST_CASE(a_crashed_host_actor_keeps_its_ledger) {
  ControllerFixture f(fig2_growth);
  f.run_until(40);
  auto donor = f.child(ChildKind::host, 1);
  caf::anon_send_exit(donor, caf::exit_reason::kill);
  f.run_until(41);
  auto back = f.child(ChildKind::host, 1);
  BOOST_TEST((back != donor));
  auto ledger = f.ask<HostCheckpoint>(caf::actor_cast<host_actor>(back), atom::get::value);
  BOOST_TEST_REQUIRE(ledger.lease_mib.size() == 1u);
  BOOST_TEST(ledger.lease_mib[0] == 49152);
}

BOOST_AUTO_TEST_CASE(recommendation_fires_exactly_at_migrate_after_s) {
  // VM5 on N borrows 4 GiB from B from t=40; B can hold all of VM5.
  const char* s = R"({
    "settings": { "migrate_after_s": 600 },
    "hosts": [ { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 },
               { "name": "N", "memory_mib": 16384,  "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM5", "host": "N", "memory_mib": 12288, "cpu_mhz": 2000 } ],
    "events": [ { "at_s": 15, "vm": "VM5", "memory_mib": 20480 } ]
  })";
  ControllerFixture f(s);
  f.run_until(40);
  BOOST_TEST_REQUIRE(f.named("lease_granted").size() == 1u);
  f.run_until(639.999);
  BOOST_TEST(f.named("migration_recommended").empty());
  f.run_until(640);
  auto rec = f.named("migration_recommended");
  BOOST_TEST_REQUIRE(rec.size() == 1u);
  BOOST_TEST(rec[0].t_s == 640.0);
  BOOST_TEST(rec[0].vm == "VM5");
  BOOST_TEST(rec[0].host == "B");
  f.run_until(2000);
  BOOST_TEST(f.named("migration_recommended").size() == 1u);  // said once
}

BOOST_AUTO_TEST_CASE(a_vm_already_borrowing_for_long_is_recommended_at_once) {
  const char* s = R"({
    "hosts": [ { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 },
               { "name": "N", "memory_mib": 16384,  "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM5", "host": "N", "memory_mib": 20480, "cpu_mhz": 2000,
               "remote": [ { "donor": "B", "mib": 4096 } ], "remote_for_s": 900 } ]
  })";
  ControllerFixture f(s);
  f.run_until(0);
  auto rec = f.named("migration_recommended");
  BOOST_TEST_REQUIRE(rec.size() == 1u);
  BOOST_TEST(rec[0].t_s == 0.0);
}

BOOST_AUTO_TEST_CASE(a_donor_failure_fails_over_to_the_mirror_then_rehomes) {
  // VM4 on B borrows from A and N (spread); A fails at t=100.
  const char* s = R"({
    "settings": { "donors": "spread" },
    "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 8000 },
               { "name": "B", "memory_mib": 16384, "cpu_mhz": 8000 },
               { "name": "N", "memory_mib": 16384, "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM4", "host": "B", "memory_mib": 16384, "cpu_mhz": 4000 } ],
    "events": [ { "at_s": 5, "vm": "VM4", "memory_mib": 32768 },
                { "at_s": 100, "host": "A", "up": false },
                { "at_s": 200, "host": "A", "up": true } ]
  })";
  ControllerFixture f(s);
  f.run_until(99);
  BOOST_TEST(f.named("lease_granted").size() == 2u);
  f.run_until(100);
  BOOST_TEST(f.named("donor_failed").size() == 1u);
  BOOST_TEST(f.named("donor_failed")[0].host == "A");
  auto fo = f.named("failover_to_mirror");
  BOOST_TEST_REQUIRE(fo.size() == 1u);
  BOOST_TEST(fo[0].vm == "VM4");
  BOOST_TEST(fo[0].donor == "A");
  BOOST_TEST(fo[0].mib == 8192);
  auto rh = f.named("lease_rehomed");
  BOOST_TEST_REQUIRE(rh.size() == 1u);
  BOOST_TEST(rh[0].donor == "N");
  BOOST_TEST(rh[0].mib == 8192);
  auto v = view(f);
  BOOST_TEST(v.hosts[0].lent_mib == 0);
  BOOST_TEST(v.hosts[2].lent_mib == 16384);
}

// A host's agent reports that a VM's mirror cannot be written (a full
// datastore): said at once, and only for the agent's own VMs. A donor's
// failure afterwards loses what it lent, openly: no failover, no re-home.
BOOST_AUTO_TEST_CASE(a_failed_mirror_is_said_and_a_donor_failure_then_loses_memory) {
  const char* s = R"({
    "settings": { "donors": "spread" },
    "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 8000 },
               { "name": "B", "memory_mib": 16384, "cpu_mhz": 8000 },
               { "name": "N", "memory_mib": 16384, "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM4", "host": "B", "memory_mib": 16384, "cpu_mhz": 4000 } ],
    "events": [ { "at_s": 5, "vm": "VM4", "memory_mib": 32768 },
                { "at_s": 100, "host": "A", "up": false } ]
  })";
  ControllerFixture f(s);
  f.run_until(50);
  BOOST_TEST_REQUIRE(f.named("lease_granted").size() == 2u);
  auto report = [&](std::uint64_t host) {
    caf::anon_send(caf::actor_cast<host_proxy_actor>(f.child(ChildKind::host, host)), atom::mirrorfail::value,
                   std::string("VM4"), std::string("No space left on device"));
  };
  report(0);  // A's agent cannot speak for a VM on B
  f.run_until(51);
  BOOST_TEST(f.named("mirror_failed").empty());
  report(1);
  f.run_until(52);
  auto failed = f.named("mirror_failed");
  BOOST_TEST_REQUIRE(failed.size() == 1u);
  BOOST_TEST(failed[0].vm == "VM4");
  report(1);  // said once
  f.run_until(53);
  BOOST_TEST(f.named("mirror_failed").size() == 1u);
  f.run_until(100);
  BOOST_TEST(f.named("donor_failed").size() == 1u);
  BOOST_TEST(f.named("failover_to_mirror").empty());
  BOOST_TEST(f.named("lease_rehomed").empty());
  auto lost = f.named("memory_lost");
  BOOST_TEST_REQUIRE(lost.size() == 1u);
  BOOST_TEST(lost[0].vm == "VM4");
  BOOST_TEST(lost[0].donor == "A");
  BOOST_TEST(lost[0].mib == 8192);
  auto v = view(f);
  BOOST_TEST(v.hosts[0].lent_mib == 0);
}

BOOST_AUTO_TEST_CASE(a_recipient_failure_lets_donors_reclaim_and_deletes_the_mirror) {
  std::string s = fig2_growth;
  s.replace(s.find(R"("events": [)"), std::string(R"("events": [)").size(),
            R"("events": [ { "at_s": 100, "host": "A", "up": false },)");
  ControllerFixture f(s);
  f.run_until(99);
  BOOST_TEST(std::filesystem::exists(f.datastore / "VM2.mirror"));
  f.run_until(100);
  auto rc = f.named("memory_reclaimed");
  BOOST_TEST_REQUIRE(rc.size() == 1u);
  BOOST_TEST(rc[0].donor == "B");
  BOOST_TEST(rc[0].vm == "VM2");
  BOOST_TEST(rc[0].mib == 49152);
  BOOST_TEST(f.named("mirror_deleted").size() == 1u);
  f.run_until(101);
  BOOST_TEST(!std::filesystem::exists(f.datastore / "VM2.mirror"));
  BOOST_TEST(f.named("donor_failed").empty());  // A lent nothing
}

BOOST_AUTO_TEST_CASE(demand_falling_back_releases_leases_and_mirror) {
  std::string s = fig2_growth;
  s.replace(s.find(R"("events": [)"), std::string(R"("events": [)").size(),
            R"("events": [ { "at_s": 105, "vm": "VM2", "memory_mib": 12288 },)");
  ControllerFixture f(s);
  f.run_until(100);
  BOOST_TEST(f.named("lease_granted").size() == 1u);
  f.run_until(129);
  BOOST_TEST(f.named("lease_released").empty());  // two samples of surplus
  f.run_until(130);
  auto rel = f.named("lease_released");
  BOOST_TEST_REQUIRE(rel.size() == 1u);
  BOOST_TEST(rel[0].mib == 49152);
  BOOST_TEST(f.named("mirror_deleted").size() == 1u);
}

BOOST_AUTO_TEST_CASE(dry_run_decides_but_changes_nothing) {
  ControllerFixture f(fig2_growth, true);
  f.run_until(200);
  BOOST_TEST(f.named("need_detected").size() == 1u);
  BOOST_TEST(f.named("lease_granted").empty());
  BOOST_TEST(f.named("mirror_created").empty());
  BOOST_TEST(!std::filesystem::exists(f.datastore / "VM2.mirror"));
}

BOOST_AUTO_TEST_CASE(a_vm_gives_back_a_lease_once_its_host_has_room_for_it) {
  // VM6 moves to A for CPU; A is full, so B lends it 4 GiB there. When VM2
  // on A shrinks, A has room and the lease goes back.
  const char* s = R"({
    "hosts": [ { "name": "A", "memory_mib": 16384,  "cpu_mhz": 32000 },
               { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 },
               { "name": "N", "memory_mib": 16384,  "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 },
             { "name": "VM6", "host": "N", "memory_mib": 4096, "cpu_mhz": 6000 } ],
    "events": [ { "at_s": 5, "vm": "VM6", "cpu_mhz": 10000 },
                { "at_s": 105, "vm": "VM2", "memory_mib": 12288 } ]
  })";
  ControllerFixture f(s);
  f.run_until(100);
  BOOST_TEST_REQUIRE(f.named("vm_migrated").size() == 1u);
  BOOST_TEST(f.named("vm_migrated")[0].host == "A");
  BOOST_TEST_REQUIRE(f.named("lease_granted").size() == 1u);
  f.run_until(200);
  auto rel = f.named("lease_released");
  BOOST_TEST_REQUIRE(rel.size() == 1u);
  BOOST_TEST(rel[0].vm == "VM6");
  BOOST_TEST(rel[0].t_s == 130.0);
}

BOOST_AUTO_TEST_CASE(a_crashed_lease_actor_comes_back_with_its_lease) {
  ControllerFixture f(fig2_growth);
  f.run_until(40);
  auto before = f.child(ChildKind::lease, 1);
  BOOST_TEST_REQUIRE(static_cast<bool>(before));
  caf::anon_send_exit(before, caf::exit_reason::kill);
  f.run_until(41);
  auto after = f.child(ChildKind::lease, 1);
  BOOST_TEST_REQUIRE(static_cast<bool>(after));
  BOOST_TEST((after != before));
  auto info = f.ask<LeaseInfo>(caf::actor_cast<lease_actor>(after), atom::get::value);
  BOOST_TEST(info.state == LeaseState::active);
  BOOST_TEST(info.mib == 49152);
  // The planner talks to the new one: releasing the lease reaches it.
  auto v = view(f);
  BOOST_TEST_REQUIRE(!v.leases.empty());
  BOOST_TEST(v.leases[0].state == LeaseState::active);
}

BOOST_AUTO_TEST_CASE(a_child_that_keeps_crashing_stops_the_controller) {
  ControllerFixture f(fig2_growth);
  caf::scoped_actor watcher{f.sys};
  watcher->monitor(f.sup);
  f.run_until(1);
  for (int i = 0; i < 7; ++i) {
    auto h = f.child(ChildKind::host, 0);
    if (!h) break;
    caf::anon_send_exit(h, caf::exit_reason::kill);
    f.run_until(f.now() + 10);  // past any backoff
  }
  caf::error reason;
  bool down = false;
  watcher->receive([&](const caf::down_msg& dm) { reason = dm.reason; down = true; },
                   caf::after(std::chrono::seconds(0)) >> [] {});
  BOOST_TEST_REQUIRE(down);
  BOOST_TEST(static_cast<bool>(reason));
  BOOST_TEST((reason != caf::exit_reason::user_shutdown));
}

// VM1 needs two donors. C's own ledger has nothing free, which the planner's
// view does not know: C refuses, and what B reserved before it is cancelled.
BOOST_AUTO_TEST_CASE(a_donor_refusing_cancels_what_the_donors_before_it_reserved) {
  ControllerFixture f(R"({
    "settings": { "detect_samples": 3, "sample_period_s": 10, "migrate_after_s": 600 },
    "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 32000 },
               { "name": "B", "memory_mib": 16384, "cpu_mhz": 8000 },
               { "name": "C", "memory_mib": 16384, "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM1", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 } ],
    "events": [ { "at_s": 15, "vm": "VM1", "memory_mib": 40960 } ]
  })");
  f.run_until(30);
  auto c = caf::actor_cast<host_actor>(f.child(ChildKind::host, 2));
  std::int64_t free_at_c = view(f).hosts[2].lendable_mib;
  BOOST_TEST_REQUIRE(f.ask<bool>(c, atom::reserve::value, std::uint64_t{999}, free_at_c));
  f.run_until(41);
  BOOST_TEST(f.named("need_detected").size() == 1u);
  BOOST_TEST(f.named("lease_granted").empty());
  auto b = f.ask<HostCheckpoint>(caf::actor_cast<host_actor>(f.child(ChildKind::host, 1)), atom::get::value);
  BOOST_TEST(b.pending_ids.empty());
  BOOST_TEST(b.lease_ids.empty());
  auto at_c = f.ask<HostCheckpoint>(c, atom::get::value);
  BOOST_TEST(at_c.pending_ids == std::vector<std::uint64_t>{999});
  BOOST_TEST(view(f).leases.empty());
}

// A compromised agent's telemetry about a VM of another host reaches nobody:
// its host actor stamps its own host on every sample, and the driver keeps
// only the samples of VMs it places there.
BOOST_AUTO_TEST_CASE(an_agent_speaks_only_for_the_vms_of_its_own_host) {
  std::vector<RemoteState> placement{{0, 0, {}}, {1, 2, {}}};
  platform::VmSample own;
  own.vm = 0;
  own.host = 0;
  platform::VmSample other = own;  // VM 1 runs on host 2; host 0's agent names it
  other.vm = 1;
  platform::VmSample unknown = own;
  unknown.vm = 7;
  auto kept = samples_of_host(placement, {own, other, unknown});
  BOOST_TEST_REQUIRE(kept.size() == 1u);
  BOOST_TEST(kept[0].vm == 0u);
  platform::VmSample from_its_host = other;
  from_its_host.host = 2;
  BOOST_TEST(samples_of_host(placement, {from_its_host}).size() == 1u);
}
