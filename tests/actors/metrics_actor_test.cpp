// The metrics actor on the test coordinator: what a scrape of `memlend run
// --metrics` shows after each kind of event, read from the exposition text
// itself, with scenario time moved by hand.
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include "tests/metrics/exposition.hpp"

#include <string>

using namespace memlend;
using memlend::test::ControllerFixture;

namespace {

constexpr double mib = 1024.0 * 1024.0;

// A registry and a controller that reports to it.
struct Metered {
  explicit Metered(const std::string& scenario) : f(scenario, false, &registry) {}
  metrics::Registry registry{"test"};
  ControllerFixture f;

  // The series' value now; a missing series fails the test.
  double at(const std::string& series) {
    auto s = test::samples(registry.exposition());
    auto it = s.find(series);
    BOOST_TEST_REQUIRE((it != s.end()), "the exposition holds " << series);
    return it->second;
  }
};

// FIG. 2's cluster; VM2's demand grows at t=15 and is detected at t=40.
const char* fig2_growth = R"({
  "settings": { "detect_samples": 3, "sample_period_s": 10 },
  "hosts": [ { "name": "A", "memory_mib": 16384,  "cpu_mhz": 32000 },
             { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 },
             { "name": "N", "memory_mib": 16384,  "cpu_mhz": 8000, "rdma": false } ],
  "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 },
           { "name": "VM5", "host": "N", "memory_mib": 12288, "cpu_mhz": 2000 } ],
  "events": [ { "at_s": 15, "vm": "VM2", "memory_mib": 65536 },
              { "at_s": 105, "vm": "VM2", "memory_mib": 12288 } ]
})";

}  // namespace

BOOST_AUTO_TEST_SUITE(metrics_actor)

BOOST_AUTO_TEST_CASE(capacities_are_there_before_the_first_sample) {
  Metered m(fig2_growth);
  BOOST_TEST(m.at("memlend_host_memory_capacity_bytes{host=\"B\"}") == 131072 * mib);
  BOOST_TEST(m.at("memlend_host_cpu_capacity_hertz{host=\"A\"}") == 32000e6);
  BOOST_TEST(m.at("memlend_host_up{host=\"N\"}") == 1);
}

BOOST_AUTO_TEST_CASE(a_lease_shows_in_counters_at_once_and_in_gauges_within_a_sample) {
  Metered m(fig2_growth);
  m.f.run_until(40);
  BOOST_TEST_REQUIRE(m.f.named("lease_granted").size() == 1u);
  BOOST_TEST(m.at("memlend_detections_total") == 1);
  BOOST_TEST(m.at("memlend_lease_grants_total{transport=\"rdma\"}") == 1);
  BOOST_TEST(m.at("memlend_decisions_total{kind=\"remote_memory\"}") == 1);
  BOOST_TEST(m.at("memlend_decision_duration_seconds_count") == 1);
  m.f.run_until(50);
  BOOST_TEST(m.at("memlend_host_memory_lent_bytes{host=\"B\"}") == 49152 * mib);
  BOOST_TEST(m.at("memlend_host_memory_lent_bytes{host=\"N\"}") == 0);
  BOOST_TEST(m.at("memlend_host_memory_borrowed_bytes{host=\"A\"}") == 49152 * mib);
  BOOST_TEST(m.at("memlend_host_memory_used_bytes{host=\"A\"}") == 16384 * mib);
  BOOST_TEST(m.at("memlend_host_memory_used_bytes{host=\"N\"}") == 12288 * mib);
  BOOST_TEST(m.at("memlend_host_cpu_used_hertz{host=\"A\"}") == 16000e6);
  BOOST_TEST(m.at("memlend_leases{host=\"B\",state=\"active\"}") == 1);
  BOOST_TEST(m.at("memlend_mirrors_active") == 1);
}

BOOST_AUTO_TEST_CASE(a_release_after_the_demand_fell_is_counted_so) {
  Metered m(fig2_growth);
  m.f.run_until(130);
  BOOST_TEST_REQUIRE(m.f.named("lease_released").size() == 1u);
  // Not yet: a vm_migrated may still follow and explain it otherwise.
  BOOST_TEST(m.at("memlend_lease_releases_total{reason=\"demand_fell\"}") == 0);
  m.f.run_until(150);
  BOOST_TEST(m.at("memlend_lease_releases_total{reason=\"demand_fell\"}") == 1);
  BOOST_TEST(m.at("memlend_lease_releases_total{reason=\"vm_migrated\"}") == 0);
  BOOST_TEST(m.at("memlend_leases{host=\"B\",state=\"active\"}") == 0);
  BOOST_TEST(m.at("memlend_host_memory_lent_bytes{host=\"B\"}") == 0);
  BOOST_TEST(m.at("memlend_mirrors_active") == 0);
}

BOOST_AUTO_TEST_CASE(a_lease_from_the_host_a_vm_moves_to_ends_by_the_move) {
  // VM2 borrows from B, then needs more CPU than A has: only B has it, and
  // what B lent it becomes local there.
  const char* s = R"({
    "hosts": [ { "name": "A", "memory_mib": 16384,  "cpu_mhz": 16000 },
               { "name": "B", "memory_mib": 131072, "cpu_mhz": 24000 } ],
    "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 8000 } ],
    "events": [ { "at_s": 5, "vm": "VM2", "memory_mib": 32768 },
                { "at_s": 105, "vm": "VM2", "cpu_mhz": 20000 } ]
  })";
  Metered m(s);
  m.f.run_until(200);
  BOOST_TEST_REQUIRE(m.f.named("vm_migrated").size() == 1u);
  BOOST_TEST_REQUIRE(m.f.named("lease_released").size() == 1u);
  BOOST_TEST(m.at("memlend_lease_releases_total{reason=\"vm_migrated\"}") == 1);
  BOOST_TEST(m.at("memlend_lease_releases_total{reason=\"demand_fell\"}") == 0);
  BOOST_TEST(m.at("memlend_decisions_total{kind=\"migrate\"}") == 1);
  BOOST_TEST(m.at("memlend_host_memory_used_bytes{host=\"B\"}") == 32768 * mib);
  BOOST_TEST(m.at("memlend_host_cpu_used_hertz{host=\"B\"}") == 20000e6);
  BOOST_TEST(m.at("memlend_host_memory_borrowed_bytes{host=\"A\"}") == 0);
}

BOOST_AUTO_TEST_CASE(a_donor_failure_counts_the_failover_the_failure_and_the_rehoming) {
  const char* s = R"({
    "settings": { "donors": "spread" },
    "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 8000 },
               { "name": "B", "memory_mib": 16384, "cpu_mhz": 8000 },
               { "name": "N", "memory_mib": 16384, "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM4", "host": "B", "memory_mib": 16384, "cpu_mhz": 4000 } ],
    "events": [ { "at_s": 5, "vm": "VM4", "memory_mib": 32768 },
                { "at_s": 100, "host": "A", "up": false } ]
  })";
  Metered m(s);
  m.f.run_until(120);
  BOOST_TEST_REQUIRE(m.f.named("lease_rehomed").size() == 1u);
  BOOST_TEST(m.at("memlend_failovers_total") == 1);
  BOOST_TEST(m.at("memlend_lease_failures_total{reason=\"donor_down\"}") == 1);
  BOOST_TEST(m.at("memlend_lease_releases_total{reason=\"rehomed\"}") == 1);
  BOOST_TEST(m.at("memlend_lease_grants_total{transport=\"rdma\"}") == 3);
  BOOST_TEST(m.at("memlend_host_up{host=\"A\"}") == 0);
  BOOST_TEST(m.at("memlend_leases{host=\"A\",state=\"active\"}") == 0);
  BOOST_TEST(m.at("memlend_leases{host=\"N\",state=\"active\"}") == 2);
  BOOST_TEST(m.at("memlend_host_memory_lent_bytes{host=\"N\"}") == 16384 * mib);
  BOOST_TEST(m.at("memlend_host_memory_borrowed_bytes{host=\"B\"}") == 16384 * mib);
}

BOOST_AUTO_TEST_CASE(a_need_nobody_can_meet_is_unsatisfied_until_it_goes) {
  const char* s = R"({
    "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 32000 },
               { "name": "B", "memory_mib": 4096,  "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM1", "host": "A", "memory_mib": 16384, "cpu_mhz": 1000 } ],
    "events": [ { "at_s": 5, "vm": "VM1", "memory_mib": 65536 },
                { "at_s": 205, "vm": "VM1", "memory_mib": 16384 } ]
  })";
  Metered m(s);
  m.f.run_until(100);
  BOOST_TEST_REQUIRE(m.f.named("unsatisfied").size() >= 1u);
  BOOST_TEST(m.at("memlend_decisions_total{kind=\"unsatisfied\"}") >= 1);
  BOOST_TEST(m.at("memlend_vms_unsatisfied") == 1);
  m.f.run_until(300);
  BOOST_TEST(m.at("memlend_vms_unsatisfied") == 0);
}

BOOST_AUTO_TEST_CASE(a_recommendation_is_outstanding_while_the_vm_borrows) {
  const char* s = R"({
    "hosts": [ { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 },
               { "name": "N", "memory_mib": 16384,  "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM5", "host": "N", "memory_mib": 20480, "cpu_mhz": 2000,
               "remote": [ { "donor": "B", "mib": 4096 } ], "remote_for_s": 900 } ],
    "events": [ { "at_s": 100, "vm": "VM5", "memory_mib": 12288 } ]
  })";
  Metered m(s);
  m.f.run_until(20);
  BOOST_TEST_REQUIRE(m.f.named("migration_recommended").size() == 1u);
  BOOST_TEST(m.at("memlend_recommendations_total") == 1);
  BOOST_TEST(m.at("memlend_decisions_total{kind=\"recommend_migration\"}") == 1);
  BOOST_TEST(m.at("memlend_recommendations_outstanding") == 1);
  // Its demand falls, it gives the loan back: nothing left to recommend.
  m.f.run_until(200);
  BOOST_TEST_REQUIRE(m.f.named("lease_released").size() == 1u);
  BOOST_TEST(m.at("memlend_recommendations_outstanding") == 0);
}

BOOST_AUTO_TEST_CASE(a_restarted_actor_is_counted_by_its_kind) {
  Metered m(fig2_growth);
  m.f.run_until(40);
  caf::anon_send_exit(m.f.child(ChildKind::lease, 1), caf::exit_reason::kill);
  m.f.run_until(41);
  BOOST_TEST(m.at("memlend_actor_restarts_total{kind=\"lease\"}") == 1);
  BOOST_TEST(m.at("memlend_actor_restarts_total{kind=\"vm\"}") == 0);
}

BOOST_AUTO_TEST_SUITE_END()
