// The rules of DESIGN.md's decision one at a time: local shares, reserves,
// who may lend, fabrics, unsatisfied needs, recommendations, and the
// run-time changes (surplus, donor failure).
#include <boost/test/unit_test.hpp>

#include "policy/cluster.hpp"
#include "tests/policy/builders.hpp"

using namespace memlend::policy;
using namespace memlend::test;

namespace {

bool mentions(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// What a VM holds: local share plus what it borrows.
std::int64_t held(const Cluster& c, VmId v) { return c.vm(v).share_mem + c.vm(v).borrowed_mib(); }

}  // namespace

BOOST_AUTO_TEST_SUITE(local_shares)

// H (16 GiB) serves V1 then V2: V1 gets its 10 GiB, V2 the other 6 and
// borrows 4. Listed the other way round, the roles swap.
BOOST_AUTO_TEST_CASE(a_host_serves_its_vms_in_scenario_order) {
  for (bool v1_first : {true, false}) {
    ScenarioBuilder b;
    b.host("H", 16 * GiB, 8 * GHz);
    b.host("D", 32 * GiB, 8 * GHz);
    b.host("O", 64 * GiB, 8 * GHz);
    if (v1_first) b.vm("V1", "H", 10 * GiB, 2 * GHz);
    b.vm("X", "O", 60 * GiB, 2 * GHz);  // another host's VM between them changes nothing
    b.vm("V2", "H", 10 * GiB, 2 * GHz);
    if (!v1_first) b.vm("V1", "H", 10 * GiB, 2 * GHz);
    Cluster c(b.s);
    VmId v1 = *b.s.find_vm("V1"), v2 = *b.s.find_vm("V2");
    VmId first = v1_first ? v1 : v2, second = v1_first ? v2 : v1;
    BOOST_TEST(c.vm(first).share_mem == 10 * GiB);
    BOOST_TEST(c.vm(second).share_mem == 6 * GiB);
    BOOST_TEST(c.host_state(0).used_mem == 16 * GiB);
    auto ds = c.plan();
    BOOST_TEST((ds[first].kind == DecisionKind::none));
    BOOST_TEST((ds[second].kind == DecisionKind::remote_memory));
    BOOST_TEST(ds[second].extra_memory_mib == 4 * GiB);
    BOOST_TEST(ds[second].local_mib == 6 * GiB);
  }
}

BOOST_AUTO_TEST_CASE(cpu_shares_follow_the_same_order) {
  ScenarioBuilder b;
  b.host("H", 16 * GiB, 8 * GHz);
  b.host("T", 16 * GiB, 16 * GHz);
  b.vm("V1", "H", 4 * GiB, 6 * GHz);
  b.vm("V2", "H", 4 * GiB, 4 * GHz);
  Cluster c(b.s);
  BOOST_TEST(c.vm(1).share_cpu == 2 * GHz);
  auto ds = c.plan();
  BOOST_TEST((ds[0].kind == DecisionKind::none));
  BOOST_TEST((ds[1].kind == DecisionKind::migrate));
  BOOST_TEST(ds[1].extra_cpu_mhz == 2 * GHz);
  BOOST_TEST(ds[1].extra_memory_mib == 0);
  BOOST_TEST(name_of(c, ds[1].target) == "T");
}

// Memory a VM already borrows is not asked of its host again.
BOOST_AUTO_TEST_CASE(borrowed_memory_counts_against_the_demand) {
  ScenarioBuilder b;
  b.host("H", 16 * GiB, 8 * GHz);
  b.host("D", 32 * GiB, 8 * GHz);
  b.vm("V", "H", 20 * GiB, 2 * GHz);
  b.borrows("V", "D", 8 * GiB);
  b.vm("W", "H", 8 * GiB, 2 * GHz);
  Cluster c(b.s);
  BOOST_TEST(c.vm(0).share_mem == 12 * GiB);
  BOOST_TEST(c.vm(1).share_mem == 4 * GiB);
  BOOST_TEST(c.host_state(1).lent == 8 * GiB);
  BOOST_TEST(c.lendable(1) == 24 * GiB);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(reserve)

BOOST_AUTO_TEST_CASE(a_donor_never_lends_its_reserve) {
  for (DonorMode mode : {DonorMode::fewest, DonorMode::spread}) {
    for (std::int64_t want : {16 * GiB, 17 * GiB}) {
      ScenarioBuilder b;
      b.settings().donors = mode;
      b.host("H", 16 * GiB, 8 * GHz);
      b.host("D", 32 * GiB, 8 * GHz).reserved_mib = 16 * GiB;
      b.vm("V", "H", 16 * GiB + want, 2 * GHz);
      Cluster c(b.s);
      BOOST_TEST(c.lendable(1) == 16 * GiB);
      BOOST_TEST(c.free_local(1) == 32 * GiB);
      auto d = c.decide(0);
      if (want <= 16 * GiB) {
        BOOST_TEST((d.kind == DecisionKind::remote_memory));
        BOOST_TEST(leases(c, d) == "D 16384");
      } else {
        BOOST_TEST((d.kind == DecisionKind::unsatisfied));
        BOOST_TEST(mentions(d.reason, "can lend only 16 GiB of 17 GiB"), d.reason);
      }
    }
  }
}

BOOST_AUTO_TEST_CASE(spread_water_fills_around_reserves) {
  // Lendable: A 2 GiB (6 - 4 reserved), B 10, C 10; 12 GiB spread: A gives
  // all 2, B and C split the other 10.
  ScenarioBuilder b;
  b.settings().donors = DonorMode::spread;
  b.host("H", 8 * GiB, 8 * GHz);
  b.host("A", 6 * GiB, 8 * GHz).reserved_mib = 4 * GiB;
  b.host("B", 16 * GiB, 8 * GHz).reserved_mib = 6 * GiB;
  b.host("C", 10 * GiB, 8 * GHz);
  b.vm("V", "H", 20 * GiB, 2 * GHz);
  Cluster c(b.s);
  auto d = c.plan()[0];
  BOOST_TEST(leases(c, d) == "A 2048, B 5120, C 5120");
  BOOST_TEST(c.lendable(1) == 0);
  BOOST_TEST(c.free_local(1) == 4 * GiB);
}

BOOST_AUTO_TEST_CASE(spread_gives_odd_megabytes_to_the_first_listed) {
  ScenarioBuilder b;
  b.settings().donors = DonorMode::spread;
  b.host("H", 1 * GiB, 8 * GHz);
  b.host("A", 8 * GiB, 8 * GHz);
  b.host("B", 8 * GiB, 8 * GHz);
  b.host("C", 8 * GiB, 8 * GHz);
  b.vm("V", "H", 1 * GiB + 3001, 2 * GHz);
  Cluster c(b.s);
  BOOST_TEST(leases(c, c.plan()[0]) == "A 1001, B 1000, C 1000");
}

BOOST_AUTO_TEST_CASE(own_vms_may_use_the_reserve) {
  ScenarioBuilder b;
  b.host("H", 16 * GiB, 8 * GHz).reserved_mib = 8 * GiB;
  b.vm("V", "H", 12 * GiB, 2 * GHz);
  Cluster c(b.s);
  BOOST_TEST(c.vm(0).share_mem == 12 * GiB);
  BOOST_TEST((c.plan()[0].kind == DecisionKind::none));
}

BOOST_AUTO_TEST_CASE(a_vm_migrating_in_may_use_the_reserve) {
  ScenarioBuilder b;
  b.host("H", 16 * GiB, 2 * GHz);
  b.host("T", 16 * GiB, 16 * GHz).reserved_mib = 8 * GiB;
  b.vm("V", "H", 12 * GiB, 4 * GHz);
  Cluster c(b.s);
  auto d = c.plan()[0];
  BOOST_TEST((d.kind == DecisionKind::migrate));
  BOOST_TEST(name_of(c, d.target) == "T");
  BOOST_TEST(d.local_mib == 12 * GiB);
  BOOST_TEST(d.leases.empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(who_lends)

// The roomiest hosts cannot lend (down, no data path, another fabric), so
// worst_fit, which would pick them, picks the one that can.
BOOST_AUTO_TEST_CASE(down_pathless_and_foreign_hosts_never_lend) {
  for (DonorMode mode : {DonorMode::fewest, DonorMode::spread}) {
    ScenarioBuilder b;
    b.settings().placement = Heuristic::worst_fit;
    b.settings().donors = mode;
    b.host("H", 16 * GiB, 8 * GHz);
    b.host("Down", 128 * GiB, 64 * GHz).up = false;
    b.host("NoPath", 128 * GiB, 64 * GHz).data_path = false;
    b.host("Foreign", 128 * GiB, 64 * GHz).fabric = "rack2";
    b.host("Ok", 8 * GiB, 8 * GHz);
    b.vm("V", "H", 24 * GiB, 2 * GHz);
    b.vm("W", "H", 8 * GiB, 2 * GHz);  // H full: W needs all of its 8 GiB from elsewhere
    Cluster c(b.s);
    auto ds = c.plan();
    BOOST_TEST(leases(c, ds[0]) == "Ok 8192", to_string(mode));
    BOOST_TEST((ds[1].kind == DecisionKind::unsatisfied));
    BOOST_TEST(mentions(ds[1].reason, "can lend only 0 MiB of 8 GiB"), ds[1].reason);
    for (HostId h : {1u, 2u, 3u}) BOOST_TEST(c.host_state(h).lent == 0);
  }
}

BOOST_AUTO_TEST_CASE(a_vm_on_a_host_without_data_path_borrows_nothing) {
  ScenarioBuilder b;
  b.host("H", 16 * GiB, 8 * GHz).data_path = false;
  b.host("D", 64 * GiB, 8 * GHz);
  b.vm("V", "H", 24 * GiB, 2 * GHz);
  Cluster c(b.s);
  auto d = c.plan()[0];
  BOOST_TEST((d.kind == DecisionKind::unsatisfied));
  BOOST_TEST(mentions(d.reason, "H has no data path"), d.reason);
  BOOST_TEST(c.host_state(1).lent == 0);
}

BOOST_AUTO_TEST_CASE(a_donor_without_rdma_lends_over_tcp) {
  ScenarioBuilder b;
  b.host("H", 16 * GiB, 8 * GHz);
  b.host("D", 64 * GiB, 8 * GHz).rdma = false;
  b.vm("V", "H", 24 * GiB, 2 * GHz);
  Cluster c(b.s);
  auto d = c.plan()[0];
  BOOST_TEST_REQUIRE(d.leases.size() == 1u);
  BOOST_TEST((d.leases[0].transport == Transport::tcp));
  BOOST_TEST(mentions(d.reason, "over TCP"), d.reason);
}

// V must move for CPU; only T has it, with 16 of the 24 GiB V needs. Before
// the move T still shows 16 GiB it could lend, the most of anyone, yet it is
// the recipient; H, which V leaves, is not asked either. E lends the 8 GiB.
BOOST_AUTO_TEST_CASE(the_recipient_never_lends_to_itself) {
  ScenarioBuilder b;
  b.settings().placement = Heuristic::worst_fit;
  b.host("H", 64 * GiB, 4 * GHz);
  b.host("T", 16 * GiB, 32 * GHz);
  b.host("E", 8 * GiB, 4 * GHz);
  b.vm("V", "H", 24 * GiB, 16 * GHz);
  Cluster c(b.s);
  auto d = c.plan()[0];
  BOOST_TEST((d.kind == DecisionKind::migrate));
  BOOST_TEST(name_of(c, d.target) == "T");
  BOOST_TEST(d.local_mib == 16 * GiB);
  BOOST_TEST(leases(c, d) == "E 8192");
}

namespace {

// V (24 GiB, 8 GHz) on A (16 GiB, 4 GHz) borrows 8 GiB from B, the one host
// with the CPU it must move for.
Cluster moving_to_donor_b(std::int64_t b_mib, std::int64_t c_mib) {
  ScenarioBuilder b;
  b.host("A", 16 * GiB, 4 * GHz);
  b.host("B", b_mib, 16 * GHz);
  b.host("C", c_mib, 4 * GHz);
  b.vm("V", "A", 24 * GiB, 8 * GHz);
  b.borrows("V", "B", 8 * GiB);
  return Cluster(b.s);
}

}  // namespace

// B has it all. The 8 GiB B lent become local on B, so after the move V
// reaches nothing remotely: no buffer, no mirror. B gives it 16 GiB anew.
BOOST_AUTO_TEST_CASE(moving_to_its_donor_makes_the_loan_local) {
  Cluster c = moving_to_donor_b(64 * GiB, 8 * GiB);
  auto d = c.plan()[0];
  BOOST_TEST((d.kind == DecisionKind::migrate));
  BOOST_TEST(name_of(c, d.target) == "B");
  BOOST_TEST(d.local_mib == 16 * GiB);
  BOOST_TEST(d.buffer_kib == 0);
  BOOST_TEST(d.mirror_mib == 0);
  BOOST_TEST(c.vm(0).share_mem == 24 * GiB);
  BOOST_TEST(c.vm(0).borrowed.empty());
  BOOST_TEST(c.host_state(1).lent == 0);
  BOOST_TEST(c.host_state(1).used_mem == 24 * GiB);
}

// B has the CPU but not the memory: B's loan turns local, C lends the rest,
// so one lease (C's) and a mirror of C's part only.
BOOST_AUTO_TEST_CASE(moving_to_a_donor_short_of_memory_keeps_one_buffer_per_remaining_lease) {
  Cluster c = moving_to_donor_b(12 * GiB, 32 * GiB);
  auto d = c.plan()[0];
  BOOST_TEST((d.kind == DecisionKind::migrate));
  BOOST_TEST(name_of(c, d.target) == "B");
  BOOST_TEST(d.local_mib == 4 * GiB);      // B's other 4 GiB
  BOOST_TEST(leases(c, d) == "C 12288");   // 24 - 8 lent by B - 4 local
  BOOST_TEST(d.buffer_kib == 1024);
  BOOST_TEST(d.mirror_mib == 12 * GiB);
  BOOST_TEST(borrowed(c, 0) == "C 12288");
  BOOST_TEST(c.vm(0).share_mem == 12 * GiB);
}

BOOST_AUTO_TEST_CASE(a_target_that_must_borrow_needs_a_data_path) {
  ScenarioBuilder b;
  b.settings().placement = Heuristic::first_fit;
  b.host("H", 8 * GiB, 4 * GHz);
  b.host("T1", 8 * GiB, 32 * GHz).data_path = false;
  b.host("T2", 8 * GiB, 32 * GHz);
  b.host("D", 64 * GiB, 4 * GHz);
  b.vm("V", "H", 24 * GiB, 16 * GHz);
  Cluster c(b.s);
  auto d = c.plan()[0];
  BOOST_TEST((d.kind == DecisionKind::migrate));
  BOOST_TEST(name_of(c, d.target) == "T2");
  BOOST_TEST(leases(c, d) == "D 16384");
}

// V borrows from B and must move for CPU. T1 and T2 come first and have
// everything, but from T1 (no data path) or T2 (another fabric) V could no
// longer reach the memory B lends it; T3 can.
BOOST_AUTO_TEST_CASE(a_borrowing_vm_moves_only_where_it_still_reaches_its_donors) {
  for (Heuristic h : {Heuristic::first_fit, Heuristic::worst_fit}) {
    ScenarioBuilder b;
    b.settings().placement = h;
    b.host("A", 16 * GiB, 4 * GHz);
    b.host("B", 64 * GiB, 4 * GHz);
    b.host("T1", 128 * GiB, 32 * GHz).data_path = false;
    b.host("T2", 128 * GiB, 48 * GHz).fabric = "other";
    b.host("T3", 64 * GiB, 16 * GHz);
    b.host("E", 4 * GiB, 1 * GHz);
    b.vm("V", "A", 24 * GiB, 8 * GHz);
    b.borrows("V", "B", 8 * GiB);
    b.vm("U", "E", 1 * GiB, 8 * GHz);  // borrows nothing: T1 and T2 will do
    Cluster c(b.s);
    auto ds = c.plan();
    BOOST_TEST((ds[0].kind == DecisionKind::migrate));
    BOOST_TEST(name_of(c, ds[0].target) == "T3", to_string(h));
    BOOST_TEST((ds[1].kind == DecisionKind::migrate));
    BOOST_TEST(name_of(c, ds[1].target) == (h == Heuristic::first_fit ? "T1" : "T2"), to_string(h));
  }
}

BOOST_AUTO_TEST_CASE(donors_come_from_the_recipients_fabric) {
  for (DonorMode mode : {DonorMode::fewest, DonorMode::spread}) {
    ScenarioBuilder b;
    b.settings().donors = mode;
    b.host("H", 16 * GiB, 8 * GHz).fabric = "r1";
    b.host("Big", 128 * GiB, 8 * GHz).fabric = "r2";
    b.host("S", 8 * GiB, 8 * GHz).fabric = "r1";
    b.host("G", 16 * GiB, 8 * GHz).fabric = "r2";
    b.vm("V", "H", 24 * GiB, 2 * GHz);
    b.vm("U", "G", 20 * GiB, 2 * GHz);
    b.vm("W", "H", 1 * GiB, 1 * GHz);  // H is full: W needs 1 GiB and r1 has none left
    Cluster c(b.s);
    auto ds = c.plan();
    BOOST_TEST(leases(c, ds[0]) == "S 8192");
    BOOST_TEST(leases(c, ds[1]) == "Big 4096");
    BOOST_TEST((ds[2].kind == DecisionKind::unsatisfied));
    BOOST_TEST(mentions(ds[2].reason, "fabric r1"), ds[2].reason);
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(unsatisfied)

// H has 8 GiB free when V grows to 40 GiB: 24 GiB more are needed, donors
// have 16. Nothing is taken, not even H's free 8 GiB.
BOOST_AUTO_TEST_CASE(nothing_is_half_done_when_donors_fall_short) {
  for (DonorMode mode : {DonorMode::fewest, DonorMode::spread}) {
    ScenarioBuilder b;
    b.settings().donors = mode;
    b.host("H", 16 * GiB, 8 * GHz);
    b.host("A", 8 * GiB, 8 * GHz);
    b.host("B", 8 * GiB, 8 * GHz);
    b.vm("V", "H", 8 * GiB, 2 * GHz);
    Cluster c(b.s);
    c.set_demand(0, 40 * GiB, 2 * GHz);
    auto d = c.decide(0);
    BOOST_TEST((d.kind == DecisionKind::unsatisfied));
    BOOST_TEST(d.extra_memory_mib == 24 * GiB);
    BOOST_TEST(d.leases.empty());
    BOOST_TEST(mentions(d.reason, "can lend only 16 GiB of 24 GiB"), d.reason);
    c.apply(d);
    BOOST_TEST(c.vm(0).share_mem == 8 * GiB);
    BOOST_TEST(c.free_local(0) == 8 * GiB);
    BOOST_TEST(c.vm(0).borrowed.empty());
    BOOST_TEST(c.host_state(1).lent == 0);
    BOOST_TEST(c.host_state(2).lent == 0);
  }
}

BOOST_AUTO_TEST_CASE(no_host_with_the_cpu) {
  ScenarioBuilder b;
  b.host("H", 16 * GiB, 8 * GHz);
  b.host("T", 64 * GiB, 12 * GHz);
  b.host("Down", 64 * GiB, 64 * GHz).up = false;
  b.vm("V", "H", 8 * GiB, 16 * GHz);
  Cluster c(b.s);
  auto d = c.plan()[0];
  BOOST_TEST((d.kind == DecisionKind::unsatisfied));
  BOOST_TEST(d.extra_cpu_mhz == 8 * GHz);
  BOOST_TEST(mentions(d.reason, "no other host that is up has 16 GHz of CPU free"), d.reason);
  BOOST_TEST(c.vm(0).host == 0u);
  BOOST_TEST(c.vm(0).share_cpu == 8 * GHz);
}

BOOST_AUTO_TEST_CASE(a_host_with_the_cpu_but_no_memory_to_be_had) {
  ScenarioBuilder b;
  b.host("H", 16 * GiB, 8 * GHz);
  b.host("T", 4 * GiB, 32 * GHz);
  b.vm("V", "H", 16 * GiB, 16 * GHz);
  Cluster c(b.s);
  auto d = c.plan()[0];
  BOOST_TEST((d.kind == DecisionKind::unsatisfied));
  BOOST_TEST(mentions(d.reason, "T has the CPU but"), d.reason);
  BOOST_TEST(c.vm(0).host == 0u);
  BOOST_TEST(c.free_local(1) == 4 * GiB);
}

BOOST_AUTO_TEST_CASE(a_vm_on_a_down_host_is_left_to_ha) {
  ScenarioBuilder b;
  b.host("H", 16 * GiB, 8 * GHz).up = false;
  b.host("D", 64 * GiB, 8 * GHz);
  b.vm("V", "H", 32 * GiB, 16 * GHz);
  Cluster c(b.s);
  auto d = c.plan()[0];
  BOOST_TEST((d.kind == DecisionKind::none));
  BOOST_TEST(mentions(d.reason, "which is down"), d.reason);
  BOOST_TEST(c.host_state(1).lent == 0);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(recommendation)

namespace {

// V on A (16 GiB) wants 24 GiB and borrows 8 GiB from B (64 GiB, 16 GHz).
ScenarioBuilder lender(std::int64_t remote_for_s) {
  ScenarioBuilder b;
  b.settings().migrate_after_s = 600;
  b.host("A", 16 * GiB, 8 * GHz);
  b.host("B", 64 * GiB, 16 * GHz);
  b.host("C", 32 * GiB, 8 * GHz);
  b.vm("V", "A", 24 * GiB, 4 * GHz);
  b.borrows("V", "B", 8 * GiB);
  b.s.vms[0].remote_for_s = remote_for_s;
  return b;
}

}  // namespace

BOOST_AUTO_TEST_CASE(fires_at_exactly_migrate_after_s) {
  {
    Cluster c(lender(599).s);
    auto d = c.plan()[0];
    BOOST_TEST((d.kind == DecisionKind::none));
    BOOST_TEST(mentions(d.reason, "599 s of the 600 s"), d.reason);
    BOOST_TEST(d.buffer_kib == 1024);
    BOOST_TEST(d.mirror_mib == 8 * GiB);
  }
  Cluster c(lender(600).s);
  auto d = c.plan()[0];
  BOOST_TEST((d.kind == DecisionKind::recommend_migration));
  BOOST_TEST(name_of(c, d.target) == "B");
  BOOST_TEST(mentions(d.reason, "migrate it to B"), d.reason);
  // A recommendation moves nothing.
  BOOST_TEST(c.vm(0).host == 0u);
  BOOST_TEST(borrowed(c, 0) == "B 8192");
}

// The donor that lends most is the candidate, even when another could take it.
BOOST_AUTO_TEST_CASE(names_the_donor_that_lends_most) {
  auto b = lender(900);
  b.s.vms[0].memory_mib = 28 * GiB;
  b.s.vms[0].remote = {{b.id("B"), 4 * GiB}, {b.id("C"), 8 * GiB}};
  Cluster c(b.s);
  auto d = c.plan()[0];
  BOOST_TEST((d.kind == DecisionKind::recommend_migration));
  BOOST_TEST(name_of(c, d.target) == "C");  // C: 24 GiB free + 8 lent = 32 ≥ 28; 8 GHz ≥ 4
}

BOOST_AUTO_TEST_CASE(ties_between_donors_go_to_the_first_listed) {
  auto b = lender(900);
  b.s.vms[0].memory_mib = 28 * GiB;
  b.s.vms[0].remote = {{b.id("C"), 6 * GiB}, {b.id("B"), 6 * GiB}};
  Cluster c(b.s);
  BOOST_TEST(name_of(c, c.plan()[0].target) == "B");
}

BOOST_AUTO_TEST_CASE(not_when_the_donor_lacks_memory_or_cpu_or_is_down) {
  {
    auto b = lender(900);
    b.s.hosts[1].memory_mib = 20 * GiB;  // 12 free + 8 lent = 20 < 24
    Cluster c(b.s);
    auto d = c.plan()[0];
    BOOST_TEST((d.kind == DecisionKind::none));
    BOOST_TEST(mentions(d.reason, "could hold only 20 GiB of its 24 GiB"), d.reason);
  }
  {
    auto b = lender(900);
    b.s.hosts[1].cpu_mhz = 3 * GHz;
    Cluster c(b.s);
    auto d = c.plan()[0];
    BOOST_TEST((d.kind == DecisionKind::none));
    BOOST_TEST(mentions(d.reason, "has only 3 GHz of the 4 GHz"), d.reason);
  }
  {
    auto b = lender(900);
    b.s.hosts[1].up = false;
    Cluster c(b.s);
    auto d = c.plan()[0];
    BOOST_TEST((d.kind == DecisionKind::none));
    BOOST_TEST(mentions(d.reason, "B is down"), d.reason);
  }
  {
    // Exactly enough: 16 free + 8 lent = 24.
    auto b = lender(900);
    b.s.hosts[1].memory_mib = 24 * GiB;
    b.s.hosts[1].cpu_mhz = 4 * GHz;
    Cluster c(b.s);
    BOOST_TEST((c.plan()[0].kind == DecisionKind::recommend_migration));
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(run_time)

// V (28 GiB on a 16 GiB host) borrows 8 from B, then 4 from C. Its demand
// falls to 23 GiB: 5 GiB spare, enough to give back C's lease (the latest)
// but not B's.
BOOST_AUTO_TEST_CASE(surplus_gives_back_whole_leases_latest_first) {
  ScenarioBuilder b;
  b.host("A", 16 * GiB, 8 * GHz);
  b.host("B", 32 * GiB, 8 * GHz);
  b.host("C", 32 * GiB, 8 * GHz);
  b.vm("V", "A", 28 * GiB, 4 * GHz);
  b.borrows("V", "B", 8 * GiB);
  b.borrows("V", "C", 4 * GiB);
  Cluster c(b.s);
  BOOST_TEST(c.surplus(0).empty());
  c.set_demand(0, 23 * GiB, 4 * GHz);
  auto s = c.surplus(0);
  BOOST_TEST_REQUIRE(s.size() == 1u);
  BOOST_TEST(s[0].donor == 2u);
  c.release(0, s[0].donor);
  BOOST_TEST(borrowed(c, 0) == "B 8192");
  BOOST_TEST(c.host_state(2).lent == 0);
  BOOST_TEST(c.lendable(2) == 32 * GiB);
  BOOST_TEST(c.vm(0).share_mem == 16 * GiB);
  // Falling within its host, it gives back everything.
  c.set_demand(0, 12 * GiB, 4 * GHz);
  s = c.surplus(0);
  BOOST_TEST(s.size() == 1u);
  for (const auto& p : s) c.release(0, p.donor);
  BOOST_TEST(c.vm(0).borrowed.empty());
  BOOST_TEST(c.vm(0).remote_for_s == 0);
  BOOST_TEST(c.vm(0).share_mem == 12 * GiB);
  BOOST_TEST(c.host_state(1).lent == 0);
}

// Room freed by a neighbour lets a VM give back a lease and take the memory
// locally instead.
BOOST_AUTO_TEST_CASE(a_lease_given_back_is_taken_locally) {
  ScenarioBuilder b;
  b.host("A", 16 * GiB, 8 * GHz);
  b.host("B", 32 * GiB, 8 * GHz);
  b.vm("N", "A", 8 * GiB, 2 * GHz);
  b.vm("V", "A", 16 * GiB, 2 * GHz);
  b.borrows("V", "B", 8 * GiB);
  Cluster c(b.s);
  BOOST_TEST(c.vm(1).share_mem == 8 * GiB);
  c.set_demand(0, 2 * GiB, 2 * GHz);
  BOOST_TEST(c.surplus(1).empty());  // 6 GiB free < the 8 GiB lease
  c.set_demand(0, 0, 2 * GHz);
  auto s = c.surplus(1);
  BOOST_TEST_REQUIRE(s.size() == 1u);
  c.release(1, s[0].donor);
  BOOST_TEST(c.vm(1).share_mem == 16 * GiB);
  BOOST_TEST(c.free_local(0) == 0);
  BOOST_TEST(c.host_state(1).lent == 0);
}

namespace {

// A (16 GiB) runs V, which borrows 8 GiB from B; C may take the loan over.
// A neighbour N, when given, is served first on A.
ScenarioBuilder borrowing_from_b(std::int64_t c_mib, std::int64_t v_mib, std::int64_t neighbour_mib = 0) {
  ScenarioBuilder b;
  b.host("A", 16 * GiB, 8 * GHz);
  b.host("B", 32 * GiB, 8 * GHz);
  b.host("C", c_mib, 8 * GHz);
  if (neighbour_mib > 0) b.vm("N", "A", neighbour_mib, 2 * GHz);
  b.vm("V", "A", v_mib, 4 * GHz);
  b.borrows("V", "B", 8 * GiB);
  return b;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_failed_donors_lease_is_rehomed) {
  Cluster c(borrowing_from_b(16 * GiB, 24 * GiB).s);
  c.set_host_up(1, false);
  BOOST_TEST(c.lendable(1) == 0);
  auto choice = c.rehome_choice(0, 1, 8 * GiB);
  BOOST_TEST_REQUIRE(choice.leases.size() == 1u);
  BOOST_TEST(name_of(c, choice.leases[0].donor) == "C");
  c.rehome(0, 1, choice.leases);
  BOOST_TEST(borrowed(c, 0) == "C 8192");
  BOOST_TEST(c.host_state(1).lent == 0);
  BOOST_TEST(c.host_state(2).lent == 8 * GiB);
  BOOST_TEST(held(c, 0) == 24 * GiB);
}

// N's demand falls after the snapshot, so A has 3 GiB free when B dies.
// The 8 GiB B lent move to C as they are; A's free room is not taken on top
// (the VM would hold 23 GiB of its 20, and C lend 3 GiB nobody uses).
BOOST_AUTO_TEST_CASE(rehoming_moves_exactly_what_the_failed_donor_lent) {
  Cluster c(borrowing_from_b(16 * GiB, 20 * GiB, 4 * GiB).s);
  BOOST_TEST(c.vm(1).share_mem == 12 * GiB);
  c.set_demand(0, 1 * GiB, 2 * GHz);
  c.set_host_up(1, false);
  auto choice = c.rehome_choice(1, 1, 8 * GiB);
  c.rehome(1, 1, choice.leases);
  BOOST_TEST(borrowed(c, 1) == "C 8192");
  BOOST_TEST(held(c, 1) == 20 * GiB);
  BOOST_TEST(c.host_state(0).used_mem == 13 * GiB);
  BOOST_TEST(c.free_local(0) == 3 * GiB);
  BOOST_TEST(c.host_state(1).lent == 0);
}

BOOST_AUTO_TEST_CASE(rehoming_with_no_donor_left_changes_nothing) {
  Cluster c(borrowing_from_b(4 * GiB, 24 * GiB).s);
  c.set_host_up(1, false);
  auto choice = c.rehome_choice(0, 1, 8 * GiB);
  BOOST_TEST(choice.leases.empty());
  BOOST_TEST(mentions(choice.reason, "can lend only 4 GiB of 8 GiB"), choice.reason);
  BOOST_TEST(borrowed(c, 0) == "B 8192");
}

BOOST_AUTO_TEST_CASE(a_host_back_up_lends_again) {
  ScenarioBuilder b;
  b.host("A", 16 * GiB, 8 * GHz);
  b.host("B", 32 * GiB, 8 * GHz).up = false;
  b.vm("V", "A", 24 * GiB, 4 * GHz);
  Cluster c(b.s);
  BOOST_TEST((c.decide(0).kind == DecisionKind::unsatisfied));
  c.set_host_up(1, true);
  auto d = c.decide(0);
  BOOST_TEST(leases(c, d) == "B 8192");
}

BOOST_AUTO_TEST_SUITE_END()

// A failed lease moves whole: its contents come back from the mirror as one
// region, so two donors that could take half each are not enough.
BOOST_AUTO_TEST_CASE(rehoming_needs_one_donor_for_the_whole_lease) {
  ScenarioBuilder b;
  b.host("A", 16 * GiB, 8 * GHz);
  b.host("B", 32 * GiB, 8 * GHz);
  b.host("C", 4 * GiB, 8 * GHz);
  b.host("D", 4 * GiB, 8 * GHz);
  b.vm("V", "A", 24 * GiB, 4 * GHz);
  b.borrows("V", "B", 8 * GiB);
  Cluster c(b.s);
  c.set_host_up(1, false);
  auto choice = c.rehome_choice(0, 1, 8 * GiB);
  BOOST_TEST(choice.leases.empty());
  BOOST_TEST(mentions(choice.reason, "no single donor can take all 8 GiB"), choice.reason);
  BOOST_TEST(borrowed(c, 0) == "B 8192");
}
