// The demand estimator on series of readings: when a real VM counts as short
// of memory or as having a surplus, by how much, and what keeps it from
// flapping.
#define BOOST_TEST_MODULE demand
#include <boost/test/unit_test.hpp>

#include "firmware_hooks/demand.hpp"

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
