#include "firmware_hooks/demand.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace memlend::platform {

namespace {

// A counter's growth per second; nullopt without two readings. A counter that
// went down (the guest rebooted, the VMM restarted) counts as no growth.
template <typename T>
std::optional<double> rate(const std::optional<T>& before, const std::optional<T>& now, double dt) {
  if (!before || !now || dt <= 0) return std::nullopt;
  if (*now < *before) return 0.0;
  return static_cast<double>(*now - *before) / dt;
}

std::int64_t round_up(std::int64_t v, std::int64_t step) { return step <= 0 ? v : (v + step - 1) / step * step; }

}  // namespace

VmDemand DemandEstimator::update(const VmReading& vm, const HostReading& host,
                                 std::chrono::steady_clock::time_point at) {
  const DemandSettings& s = settings_;
  Track& t = vms_[vm.name];
  double dt = t.last ? std::chrono::duration<double>(at - t.last_at).count() : 0;

  VmDemand d;
  d.has_mib = vm.memory_mib + vm.plugged_mib;
  if (t.last && t.last->plugged_mib != vm.plugged_mib) {
    t.plugged_changed_at = at;
    t.ever_plugged_change = true;
    // The plug answered what the readings before it said: a need (or a
    // surplus) must be seen again, on the guest's memory as it is now.
    t.state = t.candidate = State::steady;
    t.streak = 0;
  }
  // Statistics the guest sent before that change speak of memory it no
  // longer has: judged on them, a VM just given a step would ask for the next.
  bool stale = t.ever_plugged_change && vm.guest_stats_age_s &&
               at - std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(*vm.guest_stats_age_s)) <=
                   t.plugged_changed_at;

  // What this reading alone says about memory.
  std::optional<double> faults;
  if (t.last) {
    double sum = 0;
    bool any = false;
    for (auto r : {rate(t.last->major_faults, vm.major_faults, dt), rate(t.last->swap_in, vm.swap_in, dt),
                   rate(t.last->swap_out, vm.swap_out, dt)})
      if (r) sum += *r, any = true;
    if (any) faults = sum;
  }
  State seen = State::steady;
  std::ostringstream why;
  d.memory_signal = vm.guest_available_mib.has_value() && !stale;
  if (vm.guest_available_mib && stale) {
    why << "guest statistics from before its lent memory last changed: memory held at what it has";
  } else if (d.memory_signal) {
    std::int64_t avail = *vm.guest_available_mib;
    why << "guest has " << avail << " MiB available (margin " << s.margin_mib << ")";
    if (faults) why << ", faults or swaps " << static_cast<std::int64_t>(std::lround(*faults)) << "/s";
    // A guest without swap shows no faults before its OOM killer acts: at
    // half the margin it is short whatever its fault rate says.
    if (avail < s.margin_mib && ((faults && *faults >= s.fault_rate) || avail < s.margin_mib / 2))
      seen = State::short_of_memory;
    else if (vm.plugged_mib > 0 && avail > s.margin_mib + s.step_mib + s.slack_mib)
      seen = State::surplus;
  } else {
    why << "no guest memory statistics (no balloon driver reporting): memory held at what it has";
  }

  if (stale) {
    // Nothing new about memory: the state machine waits for fresh statistics.
  } else if (seen == t.candidate) {
    ++t.streak;
  } else {
    t.candidate = seen;
    t.streak = 1;
  }
  if (t.streak >= s.samples) t.state = t.candidate;
  State state = t.state;
  bool cooling = t.ever_plugged_change && std::chrono::duration<double>(at - t.plugged_changed_at).count() < s.cooldown_s;
  if (state == State::surplus && cooling) {
    state = State::steady;
    why << "; lent memory changed under " << s.cooldown_s << " s ago: no surplus yet";
  }

  d.memory_mib = d.has_mib;
  if (d.memory_signal && state == State::short_of_memory) {
    std::int64_t avail = *vm.guest_available_mib;
    d.memory_mib = d.has_mib + std::max(s.step_mib, round_up(s.margin_mib - avail, s.step_mib));
    why << "; short " << t.streak << " readings in a row: wants " << d.memory_mib << " MiB (has " << d.has_mib << ")";
  } else if (d.memory_signal && state == State::surplus) {
    std::int64_t excess = *vm.guest_available_mib - s.margin_mib - s.slack_mib;
    std::int64_t give = s.step_mib > 0 ? excess / s.step_mib * s.step_mib : 0;
    give = std::min(give, vm.plugged_mib);
    d.memory_mib = std::max(vm.memory_mib, d.has_mib - give);
    why << "; surplus " << t.streak << " readings in a row: wants " << d.memory_mib << " MiB (has " << d.has_mib
        << ")";
  } else if (d.memory_signal) {
    why << "; wants what it has, " << d.has_mib << " MiB";
  }
  if (d.memory_signal && state == State::surplus) {
    t.giving_to = d.memory_mib;
  } else if (!t.giving_to || d.has_mib <= *t.giving_to || state == State::short_of_memory) {
    t.giving_to.reset();
  } else {
    // Between its leases' unplugs what it has is no need: it gives back.
    d.memory_mib = *t.giving_to;
    why << "; giving lent memory back: wants " << d.memory_mib << " MiB";
  }

  // CPU, from the VMM's CPU seconds at the host's clock.
  double mhz_per_cpu = host.cpus > 0 ? static_cast<double>(host.cpu_mhz) / host.cpus : 0;
  std::optional<double> used = rate(t.last ? t.last->cpu_s : std::nullopt, vm.cpu_s, dt);
  std::optional<double> throttled = rate(t.last ? t.last->cpu_throttled_s : std::nullopt, vm.cpu_throttled_s, dt);
  bool pressed = host.cpu_pressure_some && *host.cpu_pressure_some > s.cpu_pressure;
  if (used) d.cpu_used_mhz = static_cast<std::int64_t>(std::lround(*used * mhz_per_cpu));
  if ((throttled && *throttled > s.throttled_share) || pressed) {
    d.cpu_mhz = static_cast<std::int64_t>(std::lround(vm.vcpus * mhz_per_cpu));
    why << "; CPU: " << (pressed ? "the host's CPU pressure is over its threshold" : "its vCPUs were throttled")
        << ", wants all " << vm.vcpus << " vCPUs (" << d.cpu_mhz << " MHz)";
  } else if (used) {
    d.cpu_mhz = d.cpu_used_mhz;
    why << "; CPU: uses " << d.cpu_mhz << " MHz";
  } else {
    why << "; CPU: not known before a second reading";
  }
  d.reason = why.str();

  t.last = vm;
  t.last_at = at;
  return d;
}

}  // namespace memlend::platform
