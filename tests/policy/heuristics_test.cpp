// Each placement heuristic of DESIGN.md on a case where it must pick a host
// that no other heuristic picks, for migration targets (memory and CPU) and
// for donors; and the orders in which one pass decides several needy VMs.
//
// Expected answers are worked out by hand from DESIGN.md's definitions:
// vectors normalised per dimension by the largest host's capacity, lower
// score wins, ties by list order. A down host of 100 GiB and 100 GHz sets
// the scale in both cases, so a normalised value is GiB/100 or GHz/100 (and
// being the roomiest host, it also shows that down hosts are never picked).
#include <boost/test/unit_test.hpp>

#include "policy/cluster.hpp"
#include "tests/policy/builders.hpp"

using namespace memlend::policy;
using namespace memlend::test;

namespace {

void add_scale_host(ScenarioBuilder& b) { b.host("Scale", 100 * GiB, 100 * GHz).up = false; }

// V on H wants 4 GiB and 28 GHz; H has 4 GHz, so V moves, and its whole
// requirement r = (4, 28) must fit. Free vectors a (GiB, GHz) of T1..T6:
//
//        a        Σa    cos(r,a)                 Σ(r-a)²          Σ r/a
//   T1 (60, 32)   92   1136/(28.28·68.00)=.591   56²+ 4²=3152   .067+.875=.942
//   T2 (28, 60)   88   1792/(28.28·66.21)=.957   24²+32²=1600   .143+.467=.610
//   T3 (52, 28)   80    992/(28.28·59.06)=.594   48²+ 0²=2304   .077+1.00=1.077
//   T4 ( 8, 76)   84   2160/(28.28·76.42)=.9993   4²+48²=2320   .500+.368=.868
//   T5 (44, 72)  116   2192/(28.28·84.38)=.918   40²+44²=3536   .091+.389=.480
//   T6 (80, 52)  132   1776/(28.28·95.41)=.658   76²+24²=6352   .050+.538=.588
//
// (Σa and Σ(r-a)² in hundredths, which orders them the same.) first_fit: T1;
// best_fit (least Σa): T3; worst_fit (most): T6; cosine (largest): T4;
// l2_diff (smallest): T2; l2_ratio (smallest): T5.
Scenario target_case(Heuristic h) {
  ScenarioBuilder b;
  b.settings().placement = h;
  b.host("H", 8 * GiB, 4 * GHz);
  const int free[6][2] = {{60, 32}, {28, 60}, {52, 28}, {8, 76}, {44, 72}, {80, 52}};
  for (int i = 0; i < 6; ++i) b.host("T" + std::to_string(i + 1), free[i][0] * GiB, free[i][1] * GHz);
  add_scale_host(b);
  b.vm("V", "H", 4 * GiB, 28 * GHz);
  return b.s;
}

// W on R wants 36 GiB and 4 GHz; R has 16 GiB, so W needs r = (20, 0) lent.
// Donors' (lendable GiB, free GHz):
//
//        a        Σa    cos(r,a) = a₁/|a|      (20-a₁)²+a₂²       20/a₁
//   D1 (32, 68)  100    32/ 75.15 = .426    144+4624=4768      .625
//   D2 (64, 16)   80    64/ 65.97 = .970   1936+ 256=2192      .313
//   D3 (36, 40)   76    36/ 53.81 = .669    256+1600=1856      .556
//   D4 (80, 32)  112    80/ 86.16 = .929   3600+1024=4624      .250
//   D5 (20, 48)   68    20/ 52.00 = .385      0+2304=2304     1.000
//   D6 (64, 80)  144    64/102.45 = .625   1936+6400=8336      .313
//
// first_fit: D1; best_fit: D5 (it fits exactly); worst_fit: D6; cosine: D2
// (the host whose free resources are mostly memory, stranded by busy CPUs);
// l2_diff: D3; l2_ratio: D4.
Scenario donor_case(Heuristic h) {
  ScenarioBuilder b;
  b.settings().placement = h;
  b.host("R", 16 * GiB, 8 * GHz);
  const int free[6][2] = {{32, 68}, {64, 16}, {36, 40}, {80, 32}, {20, 48}, {64, 80}};
  for (int i = 0; i < 6; ++i) b.host("D" + std::to_string(i + 1), free[i][0] * GiB, free[i][1] * GHz);
  add_scale_host(b);
  b.vm("W", "R", 36 * GiB, 4 * GHz);
  return b.s;
}

const std::vector<std::pair<Heuristic, const char*>> target_answers{
    {Heuristic::first_fit, "T1"}, {Heuristic::best_fit, "T3"}, {Heuristic::worst_fit, "T6"},
    {Heuristic::cosine, "T4"},    {Heuristic::l2_diff, "T2"},  {Heuristic::l2_ratio, "T5"},
};
const std::vector<std::pair<Heuristic, const char*>> donor_answers{
    {Heuristic::first_fit, "D1"}, {Heuristic::best_fit, "D5"}, {Heuristic::worst_fit, "D6"},
    {Heuristic::cosine, "D2"},    {Heuristic::l2_diff, "D3"},  {Heuristic::l2_ratio, "D4"},
};

template <class C>
void check_target(Heuristic h, const std::string& want) {
  C c(target_case(h));
  auto ds = c.plan();
  BOOST_TEST((ds[0].kind == DecisionKind::migrate), to_string(h));
  BOOST_TEST(name_of(c, ds[0].target) == want, to_string(h));
  BOOST_TEST(ds[0].local_mib == 4 * GiB);
  BOOST_TEST(ds[0].leases.empty());
  BOOST_TEST(ds[0].reason.find(std::string(to_string(h))) != std::string::npos, ds[0].reason);
}

template <class C>
void check_donor(Heuristic h, const std::string& want) {
  C c(donor_case(h));
  auto ds = c.plan();
  BOOST_TEST((ds[0].kind == DecisionKind::remote_memory), to_string(h));
  BOOST_TEST(leases(c, ds[0]) == want + " 20480", to_string(h));
  BOOST_TEST(ds[0].reason.find(std::string(to_string(h)) + " picked " + want) != std::string::npos, ds[0].reason);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(heuristics)

BOOST_AUTO_TEST_CASE(each_heuristic_picks_its_own_migration_target) {
  for (const auto& [h, want] : target_answers) {
    check_target<Cluster>(h, want);
    check_target<ScanCluster>(h, want);
  }
}

BOOST_AUTO_TEST_CASE(each_heuristic_picks_its_own_donor) {
  for (const auto& [h, want] : donor_answers) {
    check_donor<Cluster>(h, want);
    check_donor<ScanCluster>(h, want);
  }
}

// The scale matters: MiB and MHz added raw would make B (4096 + 6000 =
// 10096) fit tighter than A (16384 + 1000 = 17384). Normalised by the largest
// host (64 GiB, 8 GHz): A 16/64 + 1/8 = .375, B 4/64 + 6/8 = .8125, so A.
BOOST_AUTO_TEST_CASE(best_fit_compares_normalised_vectors) {
  ScenarioBuilder b;
  b.host("H", 4 * GiB, 500);
  b.host("A", 16 * GiB, 1 * GHz);
  b.host("B", 4 * GiB, 6 * GHz);
  b.host("Scale", 64 * GiB, 8 * GHz).up = false;
  b.vm("V", "H", 2 * GiB, 1 * GHz);
  Cluster c(b.s);
  auto ds = c.plan();
  BOOST_TEST((ds[0].kind == DecisionKind::migrate));
  BOOST_TEST(name_of(c, ds[0].target) == "A");
}

// Equal hosts tie under every heuristic; the first listed wins, as a target
// (V needs CPU and moves whole) and as a donor (U needs 8 GiB more).
BOOST_AUTO_TEST_CASE(ties_go_to_the_first_listed_host) {
  for (const auto& [h, unused] : target_answers) {
    for (bool as_target : {true, false}) {
      ScenarioBuilder b;
      b.settings().placement = h;
      b.host("H", 8 * GiB, 1 * GHz);
      b.host("X", 32 * GiB, 8 * GHz);
      b.host("Y", 32 * GiB, 8 * GHz);
      b.host("Z", 32 * GiB, 8 * GHz);
      if (as_target)
        b.vm("V", "H", 24 * GiB, 4 * GHz);
      else
        b.vm("U", "H", 16 * GiB, 1 * GHz);
      Cluster c(b.s);
      auto d = c.plan()[0];
      if (as_target)
        BOOST_TEST(name_of(c, d.target) == "X", to_string(h));
      else
        BOOST_TEST(leases(c, d) == "X 8192", to_string(h));
    }
  }
}

// Needing 40 GiB with donors of 30, 25, 20 and 15 GiB (8 GHz each), `fewest`
// takes the largest, then the heuristic's pick among those that cover the
// other 10 GiB. Scale 30 GiB, 8 GHz: best_fit Σa = 25/30+1, 20/30+1, 15/30+1
// → S, the smallest; worst_fit → Q.
BOOST_AUTO_TEST_CASE(fewest_takes_the_largest_then_the_heuristic_covers_the_rest) {
  for (auto [h, second] : {std::pair{Heuristic::best_fit, "S 10240"}, std::pair{Heuristic::worst_fit, "Q 10240"}}) {
    ScenarioBuilder b;
    b.settings().placement = h;
    b.host("H", 16 * GiB, 8 * GHz);
    b.host("P", 30 * GiB, 8 * GHz);
    b.host("Q", 25 * GiB, 8 * GHz);
    b.host("R", 20 * GiB, 8 * GHz);
    b.host("S", 15 * GiB, 8 * GHz);
    b.vm("V", "H", 56 * GiB, 2 * GHz);
    Cluster c(b.s);
    auto d = c.plan()[0];
    BOOST_TEST(leases(c, d) == std::string("P 30720, ") + second, to_string(h));
    BOOST_TEST(d.buffer_kib == 2 * 1024);
    BOOST_TEST(d.reason.find("2 fewest") != std::string::npos, d.reason);
  }
}

// Three VMs each need 16 GiB more, and D alone can lend 16 GiB: whoever is
// decided first gets it. Demands normalised by 100 GiB and 100 GHz:
//
//          demand       Π      Σ
//   Vc  (20, 5)     .010    .25    listed first
//   Va  (60, 10)    .060    .70    largest sum
//   Vb  (30, 30)    .090    .60    largest product
BOOST_AUTO_TEST_CASE(order_decides_who_gets_a_scarce_donor) {
  for (auto [order, winner] :
       {std::pair{Order::listed, "Vc"}, std::pair{Order::ffd_sum, "Va"}, std::pair{Order::ffd_prod, "Vb"}}) {
    ScenarioBuilder b;
    b.settings().order = order;
    b.host("Hc", 4 * GiB, 8 * GHz);
    b.host("Ha", 44 * GiB, 12 * GHz);
    b.host("Hb", 14 * GiB, 32 * GHz);
    b.host("D", 16 * GiB, 8 * GHz);
    add_scale_host(b);
    b.vm("Vc", "Hc", 20 * GiB, 5 * GHz);
    b.vm("Va", "Ha", 60 * GiB, 10 * GHz);
    b.vm("Vb", "Hb", 30 * GiB, 30 * GHz);
    Cluster c(b.s);
    auto ds = c.plan();
    BOOST_TEST_REQUIRE(ds.size() == 3u);
    for (VmId v = 0; v < 3; ++v) {
      BOOST_TEST(ds[v].vm == v);  // reported in scenario order whatever the order of deciding
      bool won = c.vm_names()[v] == winner;
      BOOST_TEST(ds[v].extra_memory_mib == 16 * GiB);
      BOOST_TEST((ds[v].kind == (won ? DecisionKind::remote_memory : DecisionKind::unsatisfied)),
                 to_string(order) << " " << c.vm_names()[v]);
      BOOST_TEST(leases(c, ds[v]) == (won ? "D 16384" : ""));
    }
  }
}

BOOST_AUTO_TEST_CASE(decision_order_is_stable_among_equal_keys) {
  ScenarioBuilder b;
  b.settings().order = Order::ffd_sum;
  b.host("H", 64 * GiB, 64 * GHz);
  b.vm("a", "H", 4 * GiB, 4 * GHz);
  b.vm("b", "H", 8 * GiB, 8 * GHz);
  b.vm("c", "H", 4 * GiB, 4 * GHz);
  b.vm("d", "H", 8 * GiB, 8 * GHz);
  Cluster c(b.s);
  BOOST_TEST((c.decision_order() == std::vector<VmId>{1, 3, 0, 2}));
}

BOOST_AUTO_TEST_SUITE_END()
