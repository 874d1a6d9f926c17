// From a real VM's readings to the model's demand (DESIGN.md, "Demand from
// real telemetry"). A simulated VM states what it wants; a real one never
// does, so memlend infers it from what the guest and its host say:
//
// - Memory. A VM has `memory_mib` of boot memory plus what is plugged. It is
//   short when its guest's available memory stays under the margin while it
//   faults pages in or swaps (an idle guest low on free memory only caches
//   well); it then wants what it has plus the shortfall under the margin,
//   rounded up to `step_mib`. It has a surplus when its guest keeps more than
//   margin + step + slack available while lent memory is plugged; it then
//   wants what it has less whole steps of the excess, never under its boot
//   memory. Otherwise it wants what it has.
// - CPU. It wants what it used over the last interval (its VMM's CPU seconds,
//   at the host's MHz per CPU); when its cgroup throttled it or the host's CPU
//   pressure is over the threshold, it wants every vCPU it has at full speed,
//   which its host cannot give when the host is the one short.
//
// Real signals are noisy, so the estimate is what a state machine of its own
// says, not a sample's: a state (short, surplus) holds only after
// `samples` readings in a row agree, and after lent memory was plugged or
// unplugged no surplus is reported for `cooldown_s`, so a VM is not plugged
// and unplugged on every wobble of its guest's free memory. A plug or unplug
// also starts the state machine over, and guest statistics older than it
// (a guest reports them every few seconds; the backend says their age) are
// not judged: the VM holds what it has until its guest reports again. The
// controller's own `detect_samples` then applies on top, as for every platform.
#pragma once

#include "firmware_hooks/node.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace memlend::platform {

struct DemandSettings {
  std::int64_t margin_mib = 256;       // available memory a guest should keep
  std::int64_t step_mib = 256;         // lent memory moves in steps of this (a multiple of virtio-mem's 2 MiB)
  std::int64_t slack_mib = 128;        // extra headroom before a surplus is given back
  // Major faults or swapped pages per second that count as a guest leaning on
  // its memory; below, a guest low on available memory is only caching.
  double fault_rate = 10;
  double throttled_share = 0.05;       // of the interval its vCPUs were throttled
  double cpu_pressure = 20;            // the host's CPU PSI some avg10, %
  int samples = 2;                     // readings in a row before a state holds
  double cooldown_s = 60;              // after a plug or unplug, no surplus
};

struct VmDemand {
  std::int64_t memory_mib = 0;  // what it wants, with its boot memory
  std::int64_t cpu_mhz = 0;
  std::int64_t cpu_used_mhz = 0;  // what it got over the interval (0 before a second reading)
  std::int64_t has_mib = 0;     // what it has now: boot memory + plugged
  bool memory_signal = false;   // its guest reported enough to judge memory
  std::string reason;           // one sentence: the numbers the estimate rests on
};

class DemandEstimator {
 public:
  explicit DemandEstimator(DemandSettings settings = {}) : settings_(settings) {}
  const DemandSettings& settings() const { return settings_; }

  // The VM's demand as of this reading of its host (`host` gives the MHz per
  // CPU and the pressure). Readings of one VM must come in time order.
  VmDemand update(const VmReading& vm, const HostReading& host, std::chrono::steady_clock::time_point at);
  // Forgets a VM that is gone.
  void forget(const std::string& vm) { vms_.erase(vm); }

 private:
  enum class State { steady, short_of_memory, surplus };
  struct Track {
    std::optional<VmReading> last;
    std::chrono::steady_clock::time_point last_at{};
    std::chrono::steady_clock::time_point plugged_changed_at{};
    bool ever_plugged_change = false;
    State state = State::steady;
    State candidate = State::steady;
    int streak = 0;
    // What a surplus asked to come down to: wanted until the VM has no more
    // (lent memory is unplugged a lease at a time) or its guest runs short.
    std::optional<std::int64_t> giving_to;
  };
  DemandSettings settings_;
  std::map<std::string, Track> vms_;
};

}  // namespace memlend::platform
