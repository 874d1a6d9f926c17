// The demo's guest workload: a thread that stands for the VMs on this host,
// writing a known pattern over each VM's remote memory and reading it back,
// so that a run shows real bytes crossing the data path and coming back
// intact, through evictions, a failed donor, its mirror and a re-homing.
#pragma once

#include "dataplane/data_plane.hpp"

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

namespace memlend::demo {

// What the guest workload has checked on one VM's remote memory.
struct GuestStats {
  std::uint64_t bytes_written = 0;
  std::uint64_t bytes_verified = 0;
  std::uint64_t mismatches = 0;
  std::uint64_t passes = 0;  // whole write-then-verify rounds over all its regions
  // Remote memory the guest touched and nobody could serve (its donor died
  // with no usable mirror): it got SIGBUS, as a VMM would, and left it alone.
  std::uint64_t lost_bytes = 0;
};

class GuestWorkload {
 public:
  // Starts at once on `plane`'s regions; stop it before the plane shuts down,
  // since its next step would touch memory about to go.
  explicit GuestWorkload(DataPlane& plane);
  ~GuestWorkload();
  GuestWorkload(const GuestWorkload&) = delete;
  GuestWorkload& operator=(const GuestWorkload&) = delete;

  // Joins the thread; idempotent.
  void stop();
  // Kept after a VM's memory is given back.
  GuestStats stats(const std::string& vm) const;

 private:
  // Where the guest is in one region; a region keeps its pattern when it is
  // re-homed, so it is known by the lease it was made for.
  struct Place {
    std::uint64_t generation = 0;
    std::uint64_t cursor = 0;
    bool verifying = false;
    bool lost = false;  // the guest took SIGBUS here: it touches it no more
  };
  void step(const DataPlane::Touch& t);
  void loop();

  DataPlane& plane_;
  std::map<std::pair<std::string, std::uint64_t>, Place> places_;  // the thread's own
  mutable std::mutex mu_;
  std::map<std::string, GuestStats> stats_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace memlend::demo
