// The three examples of US 9,891,954, from the scenario files in examples/
// (the same files the README points operators to).
#include <boost/test/unit_test.hpp>

#include "policy/cluster.hpp"
#include "scenario/scenario.hpp"
#include "tests/policy/builders.hpp"

using namespace memlend;
using namespace memlend::policy;
using namespace memlend::test;

namespace {

Scenario example(const std::string& name) {
  auto sc = platform::load_scenario(std::string(MEMLEND_SOURCE_DIR) + "/examples/" + name);
  if (!sc) throw std::runtime_error(sc.error().message);
  return *sc;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(patent)

// A 16 GiB/32 GHz, B 128 GiB/8 GHz, N 16 GiB/8 GHz; VM2 on A wants 64 GiB and
// 16 GHz. A covers the CPU but only 16 GiB, so 48 GiB come from B, the one
// host with that much; one lease, so one buffer of lcm(512, 1024) KiB × 1.
BOOST_AUTO_TEST_CASE(fig2_lends_48_gib_from_b_with_a_1_mib_buffer) {
  Cluster c(example("fig2.json"));
  auto ds = c.plan();
  BOOST_TEST_REQUIRE(ds.size() == 1u);
  const Decision& d = ds[0];
  BOOST_TEST((d.kind == DecisionKind::remote_memory));
  BOOST_TEST(name_of(c, d.host) == "A");
  BOOST_TEST(d.extra_memory_mib == 48 * GiB);
  BOOST_TEST(d.extra_cpu_mhz == 0);
  BOOST_TEST(leases(c, d) == "B 49152");
  BOOST_TEST((d.leases[0].transport == Transport::rdma));
  BOOST_TEST(d.local_mib == 16 * GiB);
  BOOST_TEST(d.buffer_kib == 1024);
  BOOST_TEST(d.mirror_mib == 48 * GiB);
  BOOST_TEST(d.target == no_host);
  BOOST_TEST(d.reason.find("B lends 48 GiB") != std::string::npos, d.reason);
  // The view now holds the lease: B lends 48 GiB and has 80 GiB left to lend.
  BOOST_TEST(c.host_state(1).lent == 48 * GiB);
  BOOST_TEST(c.lendable(1) == 80 * GiB);
  BOOST_TEST(borrowed(c, 0) == "B 49152");
}

// Three 16 GiB/8 GHz hosts; VM4 on B wants 32 GiB and 4 GHz: 16 GiB more.
// The file asks for `spread`: A and N give 8 GiB each, one buffer per lease.
BOOST_AUTO_TEST_CASE(fig3_spreads_16_gib_over_a_and_n) {
  Cluster c(example("fig3.json"));
  auto ds = c.plan();
  BOOST_TEST_REQUIRE(ds.size() == 1u);
  const Decision& d = ds[0];
  BOOST_TEST((d.kind == DecisionKind::remote_memory));
  BOOST_TEST(d.extra_memory_mib == 16 * GiB);
  BOOST_TEST(leases(c, d) == "A 8192, N 8192");
  BOOST_TEST(d.buffer_kib == 2 * 1024);  // 4 KiB pages, 1024 KiB blocks: 1 MiB per lease
  BOOST_TEST(d.mirror_mib == 16 * GiB);
}

// The same cluster under `fewest`: A and N tie on every heuristic, so the
// first listed, A, lends all 16 GiB.
BOOST_AUTO_TEST_CASE(fig3_under_fewest_takes_one_donor) {
  Scenario s = example("fig3.json");
  s.settings.donors = DonorMode::fewest;
  for (Heuristic h : {Heuristic::first_fit, Heuristic::best_fit, Heuristic::worst_fit, Heuristic::cosine,
                      Heuristic::l2_diff, Heuristic::l2_ratio}) {
    s.settings.placement = h;
    Cluster c(s);
    auto ds = c.plan();
    BOOST_TEST(leases(c, ds[0]) == "A 16384", to_string(h));
    BOOST_TEST(ds[0].buffer_kib == 1024);
  }
}

// A VM that would need 32 GiB under `spread` but whose own override says
// `fewest` gets one donor: the per-VM setting wins.
BOOST_AUTO_TEST_CASE(fig3_per_vm_donor_mode_overrides_the_setting) {
  Scenario s = example("fig3.json");
  s.vms[0].donors = DonorMode::fewest;
  Cluster c(s);
  BOOST_TEST(leases(c, c.plan()[0]) == "A 16384");
}

// A, B 16 GiB/8 GHz; C 8 GiB/32 GHz; D 64 GiB/4 GHz. On B, VM1 (8 GiB, 4 GHz)
// is served first, so VM4 (24 GiB, 16 GHz) gets B's other 8 GiB and 4 GHz: it
// needs 12 GHz more, so it moves. Only C has 16 GHz free; it gives 8 GiB
// locally and the other 16 GiB are lent to it there, by best_fit over
// (lendable, CPU free) normalised by 64 GiB and 32 GHz, B excluded (the VM is
// leaving it):  A 16/64 + 8/32 = 0.5,  D 64/64 + 4/32 = 1.125  → A.
BOOST_AUTO_TEST_CASE(cpu_case_migrates_to_the_host_with_the_cpu_then_lends_the_rest) {
  Cluster c(example("cpu.json"));
  auto ds = c.plan();
  BOOST_TEST_REQUIRE(ds.size() == 2u);
  BOOST_TEST((ds[0].kind == DecisionKind::none));
  const Decision& d = ds[1];
  BOOST_TEST((d.kind == DecisionKind::migrate));
  BOOST_TEST(name_of(c, d.host) == "B");
  BOOST_TEST(name_of(c, d.target) == "C");
  BOOST_TEST(d.extra_cpu_mhz == 12 * GHz);
  BOOST_TEST(d.local_mib == 8 * GiB);
  BOOST_TEST(leases(c, d) == "A 16384");
  BOOST_TEST(d.buffer_kib == 1024);
  BOOST_TEST(d.mirror_mib == 16 * GiB);
  // After the move: C holds it, B got back what VM4 had there.
  BOOST_TEST(c.vm(1).host == 2u);
  BOOST_TEST(c.vm(1).share_mem == 8 * GiB);
  BOOST_TEST(c.vm(1).share_cpu == 16 * GHz);
  BOOST_TEST(c.free_local(1) == 8 * GiB);
  BOOST_TEST(c.cpu_free(1) == 4 * GHz);
  BOOST_TEST(c.free_local(2) == 0);
  BOOST_TEST(c.host_state(0).lent == 16 * GiB);
}

// When the host with the CPU has the memory too, nothing is lent.
BOOST_AUTO_TEST_CASE(cpu_case_with_room_on_the_target_is_all_local) {
  Scenario s = example("cpu.json");
  s.hosts[2].memory_mib = 32 * GiB;  // C
  Cluster c(s);
  Decision d = c.plan()[1];
  BOOST_TEST((d.kind == DecisionKind::migrate));
  BOOST_TEST(name_of(c, d.target) == "C");
  BOOST_TEST(d.local_mib == 24 * GiB);
  BOOST_TEST(d.leases.empty());
  BOOST_TEST(d.buffer_kib == 0);
  BOOST_TEST(d.mirror_mib == 0);
}

BOOST_AUTO_TEST_CASE(buffer_is_lcm_of_page_and_block_times_blocks) {
  Settings s;
  s.page_size_kib = 512;
  s.rdma_block_kib = 1024;
  s.buffer_blocks = 1;
  BOOST_TEST(buffer_kib_per_lease(s) == 1024);  // the patent: 2 pages = 1 block = 1 MiB
  s.page_size_kib = 2048;
  s.buffer_blocks = 3;
  BOOST_TEST(buffer_kib_per_lease(s) == 3 * 2048);  // a huge page is bigger than a block
  s.page_size_kib = 4;
  s.rdma_block_kib = 64;
  s.buffer_blocks = 1;
  BOOST_TEST(buffer_kib_per_lease(s) == 64);
}

BOOST_AUTO_TEST_SUITE_END()
