// The insides of a remote region, shared by its pieces: the backing
// (region_backing), the blocks (region_blocks.hpp), the fault thread
// (region_faults.cpp), the write-back and mirror threads
// (region_writeback.cpp) and the region itself (region.cpp).
//
// The locking rule. One mutex, RegionCore::mu, guards all of the region's
// mutable state except the counters (atomics, read by stats() without it):
// blocks, buffer counts, state, links, queues, staging slots, and the flags
// beside them. Three kinds of thread take it: the fault thread, the
// write-back thread with its mirror writer, and callers (flush, evict_all,
// fail_over, rehome, detach, stats).
// - It is held for bookkeeping and for the userfaultfd calls that change a
//   block's mapping or protection, so that one thread's change is never
//   undone by another's late one (a write-back's fence by a write fault's
//   unprotect). It is let go around everything that can take long or call
//   out: transfers and their waits, mirror reads, writes and syncs, punching
//   a block out, waking faulted threads, and events (donor_lost(), emit()).
//   What was seen before letting it go may have changed once it is taken
//   back: look again.
// - A thread that waits for another's progress waits on `cv` (slots freed,
//   write-backs and markers done, a new link taken), in slices of at most
//   100 ms that look again at stop and the region's state, and every such
//   wait of a caller ends by a deadline (hand_over_limit()) with an error
//   rather than a hang. The worker threads idle on their own condition
//   (`wb_cv`, `mirror_cv`; the fault thread in poll() on the userfaultfd and
//   `wake`) until given work or told to stop. The one wait of a worker on a
//   caller: a re-home holds the write-back thread, and either the fault
//   thread (taking the new link) or the re-home's own deadline lets it go.
// - Nobody waits with the lock held except on a condition variable of this
//   region, and no callback (on_event, log) is called with it held.
#pragma once

#include "rdma/region.hpp"
#include "rdma/region_backing.hpp"
#include "rdma/region_blocks.hpp"
#include "rdma/region_uffd.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unistd.h>
#include <utility>

namespace memlend::rdma::region_detail {

struct Work {
  enum class Kind { evict, clean, flush_marker } kind;
  std::uint64_t block = 0;
  std::uint64_t generation = 0;
};

struct Counters {
  std::atomic<std::uint64_t> faults{0}, write_faults{0}, fetches{0}, prefetches{0}, evictions{0},
      clean_evictions{0}, bytes_read{0}, bytes_written{0}, mirror_bytes_read{0}, mirror_bytes_written{0},
      failovers{0}, rehomes{0};
};

// What all of a region's threads share. Fixed after init: cfg, space (but
// its uffd, closed on detach), backing (the pointer), wp_installs,
// can_poison, plan. The rest is guarded by mu.
struct RegionCore {
  RegionCore(const RegionConfig& config, DonorLink l) : cfg(config), link(std::move(l)) {}

  RegionConfig cfg;
  Space space;
  std::unique_ptr<Backing> backing;
  bool wp_installs = false;  // blocks are mapped write-protected, so first writes are seen
  bool can_poison = false;
  bool registered = false;
  BufferPlan plan;

  mutable std::mutex mu;
  std::condition_variable cv;         // slots freed, markers done, hand-overs done
  std::condition_variable wb_cv;      // write-back work
  std::condition_variable mirror_cv;  // mirror writer work
  UniqueFd wake;                      // eventfd: the fault thread has something to look at
  UniqueFd peer;                      // adopted: the handing process's socket, closed when it exits

  DonorLink link;
  DonorLink pending;  // handed over by rehome(), installed by the owning threads
  BlockTable blocks;
  std::uint64_t resident = 0;          // fetching + resident + writing
  std::uint64_t queued_evictions = 0;  // in the queue or being carried out
  RegionState state = RegionState::remote;
  std::string error;
  bool stop = false;
  bool detached = false;
  bool rehoming = false;
  bool mirror_broken = false;
  std::string mirror_error;
  std::set<std::uint64_t> rehome_log;  // blocks written to the mirror during a re-home's copy
  std::atomic<bool> halting{false};    // stop, for the re-home's copy, which runs without the lock

  Counters counts;
  LatencyHistogram latency;

  bool mirror_usable() const { return cfg.mirror && !mirror_broken; }
  // How long a caller may wait for the region's own threads: a few I/O
  // timeouts, each of their steps being bounded by one.
  Millis hand_over_limit() const { return std::max(Millis(1000), cfg.timeouts.io * 4); }
  const std::uint8_t* contents(std::uint64_t b) const { return backing->contents(b, blocks[b].in_view()); }
  void signal_fault_thread() {
    std::uint64_t one = 1;
    if (wake) (void)!::write(wake.get(), &one, sizeof one);
  }
  void interrupt_links() {
    if (link.fetch) link.fetch->interrupt();
    if (link.writeback) link.writeback->interrupt();
  }
  void emit(RegionEvent::Kind k, const std::string& detail) {
    if (cfg.on_event) cfg.on_event(RegionEvent{k, detail});
  }
  // The donor stopped answering: on to the mirror, or failed. Without mu.
  void donor_lost(const std::string& reason);
};

// Writes dirty blocks back to the donor and, in its own thread, to the
// mirror; evicts; runs the markers of flush() and evict_all().
class WriteBack {
 public:
  explicit WriteBack(RegionCore& r) : r_(r) {}
  void start();
  void join();

  // With mu held.
  void queue_eviction_ahead();
  // A failed region: queues the oldest clean block's eviction. False if
  // there is none and nothing under way could free a slot either.
  bool evict_clean();
  bool busy() const { return busy_; }
  // A block may still reach the mirror (a re-home waits for this to end).
  bool copying() const { return busy_ || mirror_busy_ || !mirror_q_.empty(); }
  void hold() { paused_ = true; }
  void resume() {
    paused_ = false;
    r_.wb_cv.notify_all();
  }

  // Without mu: flush() (evict false) and evict_all().
  Status run_marker(bool evict);

 private:
  void loop();
  void mirror_loop();
  void queue(Work w);
  bool write_back(const Work& w);
  bool saved_once(std::uint64_t b, bool evict, std::unique_lock<std::mutex>& lock);
  void finish_write_back(std::uint64_t b, bool evict, std::unique_lock<std::mutex>& lock);
  void drop(std::uint64_t b, std::unique_lock<std::mutex>& lock);

  RegionCore& r_;
  std::deque<Work> work_;
  // Blocks held in the buffer until the mirror has them too: bounded by the
  // buffer, and so is the mirror's lag.
  std::deque<Work> mirror_q_;
  bool busy_ = false;
  bool mirror_busy_ = false;
  bool paused_ = false;  // by a re-home, until the fault thread takes the new link
  std::uint64_t marker_requested_ = 0, marker_done_ = 0;
  Status marker_result_ = ok();
  std::thread thread_, mirror_thread_;
};

// Serves the userfaultfd: fetches blocks (and reads ahead), maps them, sees
// first writes, loses what nobody can serve.
class FaultLoop {
 public:
  FaultLoop(RegionCore& r, WriteBack& wb) : r_(r), wb_(wb) {}
  void start();
  void join();

 private:
  void loop();
  // Returns true if the region is over (its recipient is gone).
  bool idle(std::unique_lock<std::mutex>& lock);
  void install_pending(std::unique_lock<std::mutex>& lock);
  void handle_read_fault(std::uint64_t b, std::uint64_t addr, std::unique_lock<std::mutex>& lock);
  void handle_write_fault(std::uint64_t b, std::uint64_t addr, std::unique_lock<std::mutex>& lock);
  bool claim_slot(std::unique_lock<std::mutex>& lock, bool wait);
  bool take_slot(std::uint64_t b, std::unique_lock<std::mutex>& lock, bool wait);
  void start_fetch(std::uint64_t b, std::unique_lock<std::mutex>& lock);
  void read_ahead(std::uint64_t b, std::unique_lock<std::mutex>& lock);
  void complete_until(std::uint64_t b, std::unique_lock<std::mutex>& lock);
  void complete_oldest(std::unique_lock<std::mutex>& lock);
  void refetch_inflight_from_mirror(std::unique_lock<std::mutex>& lock);
  void arrived(std::uint64_t b);
  void lose_block(std::uint64_t b);

  RegionCore& r_;
  WriteBack& wb_;
  std::deque<std::pair<Ticket, std::uint64_t>> inflight_;  // reads posted, in order
  std::thread thread_;
};

}  // namespace memlend::rdma::region_detail
