// The demand estimator on series of readings: when a real VM counts as short
// of memory or as having a surplus, by how much, and what keeps it from
// flapping.
#define BOOST_TEST_MODULE demand
#include <boost/test/unit_test.hpp>

#include "firmware_hooks/demand.hpp"
#include "firmware_hooks/node_sampler.hpp"

#include <memory>
#include <vector>

using namespace memlend::platform;
using Clock = std::chrono::steady_clock;

namespace {

HostReading host() {
  HostReading h;
  h.name = "h";
  h.cpus = 4;
  h.cpu_mhz = 8000;
  return h;
}

VmReading vm(std::int64_t available, std::uint64_t faults, std::int64_t plugged = 0, double cpu_s = 0) {
  VmReading v;
  v.name = "vm";
  v.memory_mib = 1024;
  v.vcpus = 2;
  v.plugged_mib = plugged;
  v.pluggable_mib = 4096;
  v.guest_available_mib = available;
  v.major_faults = faults;
  v.cpu_s = cpu_s;
  return v;
}

struct Series {
  DemandEstimator est;
  Clock::time_point t = Clock::time_point{} + std::chrono::hours(1);
  explicit Series(DemandSettings s = {}) : est(s) {}
  VmDemand next(const VmReading& r, double after_s = 10, const HostReading& h = host()) {
    t += std::chrono::milliseconds(static_cast<long>(after_s * 1000));
    return est.update(r, h, t);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(low_available_memory_with_faults_is_a_need_once_it_holds) {
  Series s;
  BOOST_TEST(s.next(vm(900, 0)).memory_mib == 1024);
  // 150 MiB available, 100 faults/s: short, but one reading is not enough.
  BOOST_TEST(s.next(vm(150, 1000)).memory_mib == 1024);
  VmDemand d = s.next(vm(140, 2000));
  // The shortfall under the 256 MiB margin (116), rounded up to a step.
  BOOST_TEST(d.memory_mib == 1024 + 256);
  BOOST_TEST(d.has_mib == 1024);
  BOOST_TEST(d.reason.find("short 2 readings") != std::string::npos, d.reason);
}

BOOST_AUTO_TEST_CASE(low_available_memory_without_faults_is_only_cache_until_half_the_margin) {
  Series s;
  for (int i = 0; i < 4; ++i) BOOST_TEST(s.next(vm(200, 5)).memory_mib == 1024);
  s.next(vm(100, 5));
  VmDemand d = s.next(vm(90, 5));
  BOOST_TEST(d.memory_mib == 1024 + 256);
}

BOOST_AUTO_TEST_CASE(a_big_shortfall_asks_for_whole_steps) {
  Series s;
  s.next(vm(0, 0));
  VmDemand d = s.next(vm(0, 100000));
  BOOST_TEST(d.memory_mib == 1024 + 256);
  DemandSettings small;
  small.step_mib = 64;
  small.margin_mib = 300;
  Series t(small);
  t.next(vm(10, 0));
  BOOST_TEST(t.next(vm(10, 0)).memory_mib == 1024 + 320);  // 290 short → 5 steps of 64
}

BOOST_AUTO_TEST_CASE(a_surplus_gives_back_whole_steps_but_not_within_the_cooldown) {
  DemandSettings set;
  set.cooldown_s = 60;
  Series s(set);
  s.next(vm(100, 0, 0));
  // 512 MiB plugged: the guest now has plenty available.
  BOOST_TEST(s.next(vm(1200, 0, 512)).memory_mib == 1024 + 512);
  BOOST_TEST(s.next(vm(1200, 0, 512)).memory_mib == 1024 + 512);
  VmDemand cooling = s.next(vm(1200, 0, 512));
  BOOST_TEST(cooling.memory_mib == 1024 + 512);
  BOOST_TEST(cooling.reason.find("no surplus yet") != std::string::npos, cooling.reason);
  // 70 s after the plug: excess 1200 - 256 - 128 = 816 → 3 steps, capped at the 512 plugged.
  VmDemand d = s.next(vm(1200, 0, 512), 50);
  BOOST_TEST(d.memory_mib == 1024);
  // Unplugged a lease at a time: what is still plugged meanwhile is no need.
  BOOST_TEST(s.next(vm(1000, 0, 256)).memory_mib == 1024);
  BOOST_TEST(s.next(vm(1000, 0, 256)).memory_mib == 1024);
  BOOST_TEST(s.next(vm(800, 0, 0)).memory_mib == 1024);
  BOOST_TEST(s.next(vm(800, 0, 0)).memory_mib == 1024);
}

BOOST_AUTO_TEST_CASE(a_surplus_never_goes_under_the_boot_memory_nor_without_plugged_memory) {
  Series s;
  for (int i = 0; i < 5; ++i) BOOST_TEST(s.next(vm(3000, 0, 0)).memory_mib == 1024);
  Series t;
  t.next(vm(800, 0, 256));
  VmDemand d = t.next(vm(800, 0, 256));
  // 800 - 384 = 416 → one step of 256, all that is plugged.
  BOOST_TEST(d.memory_mib == 1024);
}

// A guest sends its statistics every few seconds and readings come faster:
// just after a plug they still show the guest short of memory it now has.
BOOST_AUTO_TEST_CASE(a_plug_is_judged_on_the_guests_statistics_after_it_not_before) {
  Series s;
  auto aged = [](VmReading r, double age_s) {
    r.guest_stats_age_s = age_s;
    return r;
  };
  s.next(aged(vm(60, 0), 0.5), 1);
  BOOST_TEST(s.next(aged(vm(60, 0), 1.5), 1).memory_mib == 1024 + 256);
  // 256 MiB plugged; the statistics are those of 2.5 and 3.5 s ago, from
  // before it: the VM holds what it has, and asks for no second step.
  VmDemand stale = s.next(aged(vm(60, 0, 256), 2.5), 1);
  BOOST_TEST(stale.memory_mib == 1024 + 256);
  BOOST_TEST(!stale.memory_signal);
  BOOST_TEST(stale.reason.find("from before its lent memory last changed") != std::string::npos, stale.reason);
  BOOST_TEST(s.next(aged(vm(60, 0, 256), 3.5), 1).memory_mib == 1024 + 256);
  // Fresh ones: what the guest has now, and a need only once it holds again.
  BOOST_TEST(s.next(aged(vm(300, 0, 256), 0.5), 1).memory_mib == 1024 + 256);
  BOOST_TEST(s.next(aged(vm(60, 0, 256), 0.5), 1).memory_mib == 1024 + 256);
  BOOST_TEST(s.next(aged(vm(60, 0, 256), 1.5), 1).memory_mib == 1024 + 512);
}

BOOST_AUTO_TEST_CASE(a_wobble_around_the_margin_changes_nothing) {
  Series s;
  // Short and fine by turns: no state holds two readings in a row.
  for (int i = 0; i < 10; ++i) {
    BOOST_TEST(s.next(vm(100, 1000u * i)).memory_mib == 1024);
    BOOST_TEST(s.next(vm(600, 1000u * i)).memory_mib == 1024);
  }
}

BOOST_AUTO_TEST_CASE(without_guest_statistics_memory_is_held_and_said_so) {
  Series s;
  VmReading r = vm(0, 0);
  r.guest_available_mib.reset();
  r.major_faults.reset();
  s.next(r);
  VmDemand d = s.next(r);
  BOOST_TEST(!d.memory_signal);
  BOOST_TEST(d.memory_mib == 1024);
  BOOST_TEST(d.reason.find("no guest memory statistics") != std::string::npos, d.reason);
}

BOOST_AUTO_TEST_CASE(a_counter_that_goes_back_is_a_restart_not_a_storm) {
  Series s;
  s.next(vm(200, 1000000));
  VmDemand d = s.next(vm(200, 10));
  BOOST_TEST(d.memory_mib == 1024);
}

BOOST_AUTO_TEST_CASE(cpu_is_what_it_used_unless_throttled_or_the_host_is_pressed) {
  Series s;
  VmDemand first = s.next(vm(900, 0, 0, 100));
  BOOST_TEST(first.cpu_mhz == 0);
  // 15 CPU seconds in 10 s at 2000 MHz a CPU.
  BOOST_TEST(s.next(vm(900, 0, 0, 115)).cpu_mhz == 3000);
  HostReading pressed = host();
  pressed.cpu_pressure_some = 50;
  VmDemand d = s.next(vm(900, 0, 0, 116), 10, pressed);
  BOOST_TEST(d.cpu_mhz == 4000);
  BOOST_TEST(d.reason.find("CPU pressure") != std::string::npos, d.reason);
  VmReading throttled = vm(900, 0, 0, 117);
  throttled.cpu_throttled_s = 0;
  s.next(throttled);
  throttled.cpu_s = 118;
  throttled.cpu_throttled_s = 2;
  BOOST_TEST(s.next(throttled).cpu_mhz == 4000);
}

namespace {

// Readings played back in order, as a node would give them.
class Playback final : public NodePlatform {
 public:
  std::vector<NodeReading> readings;
  std::size_t next = 0;
  std::string_view backend() const override { return "playback"; }
  memlend::Expected<NodeReading> read() override {
    if (next >= readings.size()) return memlend::Error{"no more readings", memlend::ErrorCode::unavailable};
    return readings[next++];
  }
  memlend::Expected<void> attach(const std::string&, const LentMemory&) override { return {}; }
  memlend::Expected<void> detach(const std::string&, const LentMemory&) override { return {}; }
  memlend::Expected<void> migrate(const std::string&, const MigrationTarget&) override { return {}; }
  memlend::Expected<void> set_balloon(const std::string&, std::int64_t) override { return {}; }
};

NodeReading node_at(double s, std::int64_t available, std::vector<VmReading> vms) {
  NodeReading r;
  r.at = Clock::time_point{} + std::chrono::milliseconds(static_cast<long>(s * 1000));
  r.host = host();
  r.host.memory_mib = 16384;
  r.host.available_mib = available;
  r.vms = std::move(vms);
  return r;
}

}  // namespace

// What an agent of a real node sends: the host's memory for VMs (its VMs'
// and what is available, less the reserve), each running VM by name with the
// estimator's demand, and nothing for a stopped one.
BOOST_AUTO_TEST_CASE(a_node_sample_is_the_host_for_vms_and_each_running_vm_by_name) {
  auto playback = std::make_shared<Playback>();
  VmReading stopped = vm(0, 0);
  stopped.name = "off";
  stopped.running = false;
  playback->readings = {node_at(0, 3000, {vm(50, 0, 0, 1), stopped}), node_at(10, 3000, {vm(50, 0, 0, 11)}),
                        node_at(20, 2500, {})};
  NodeSampler sampler(playback, DemandSettings{}, 1000);
  auto first = sampler.sample();
  BOOST_TEST_REQUIRE(static_cast<bool>(first));
  BOOST_TEST(first->facts.name == "h");
  BOOST_TEST(first->facts.memory_mib == 1024 + 3000);
  BOOST_TEST(first->facts.reserved_mib == 1000);
  BOOST_TEST(first->facts.cpu_mhz == 8000);
  BOOST_TEST_REQUIRE(first->vms.size() == 1u);
  BOOST_TEST(first->vms[0].name == "vm");
  BOOST_TEST(first->vms[0].local_mem == 1024);
  BOOST_TEST(first->vms[0].host_free_mem == 2000);
  BOOST_TEST(first->host.used_mem == 1024);
  BOOST_TEST(first->reasons.size() == 1u);

  // Under half the margin for two readings: short by whole steps; a second
  // reading gives the CPU rate (10 s of CPU in 10 s: one of 4 CPUs at 2000 MHz).
  auto second = sampler.sample();
  BOOST_TEST_REQUIRE(second->vms.size() == 1u);
  BOOST_TEST(second->vms[0].demand_mem == 1024 + 256);
  BOOST_TEST(second->vms[0].demand_cpu == 2000);
  BOOST_TEST(second->vms[0].local_cpu == 2000);

  // The VM is gone: nothing of it is sent, and the reading still is.
  auto third = sampler.sample();
  BOOST_TEST_REQUIRE(static_cast<bool>(third));
  BOOST_TEST(third->vms.empty());
  BOOST_TEST(third->facts.memory_mib == 2500);
  auto none = sampler.sample();
  BOOST_TEST_REQUIRE(!none);
  BOOST_TEST((none.error().code == memlend::ErrorCode::unavailable));
}
