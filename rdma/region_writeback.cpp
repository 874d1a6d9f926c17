// The write-back thread and the mirror writer: dirty blocks go to the donor
// and the mirror at the same time, evicted blocks leave the buffer once both
// have them, and the markers of flush() and evict_all() say when a batch is
// done.
#include "rdma/region_impl.hpp"

#include <cstring>
#include <pthread.h>

namespace memlend::rdma::region_detail {

void WriteBack::start() {
  thread_ = std::thread([this] { loop(); });
  if (r_.cfg.mirror) mirror_thread_ = std::thread([this] { mirror_loop(); });
}

// After stop is set: the mirror writer drains its queue first.
void WriteBack::join() {
  if (thread_.joinable()) thread_.join();
  r_.mirror_cv.notify_all();
  if (mirror_thread_.joinable()) mirror_thread_.join();
}

void WriteBack::queue(Work w) {
  r_.blocks[w.block].queued = true;
  if (w.kind == Work::Kind::evict) ++r_.queued_evictions;
  work_.push_back(w);
}

// Keeps slots free by evicting the oldest blocks ahead of need, unless the
// whole region fits the buffer. Evictions go in batches (below half the
// reserve, up to all of it), so the write-back thread wakes once per batch.
void WriteBack::queue_eviction_ahead() {
  std::uint64_t capacity = r_.plan.capacity, reserve = r_.plan.reserve;
  if (r_.blocks.size() <= capacity) return;
  std::uint64_t low = std::max<std::uint64_t>(1, reserve / 2), high = std::max<std::uint64_t>(1, reserve);
  auto free_soon = [&] { return capacity - std::min(r_.resident, capacity) + r_.queued_evictions; };
  if (free_soon() >= low) return;
  bool queued = false;
  std::uint64_t b = 0;
  while (free_soon() < high && r_.blocks.oldest(b)) {
    if (r_.state == RegionState::failed && r_.blocks[b].dirty) break;  // its only copy: keep it
    r_.blocks.pop_oldest();
    queue(Work{Work::Kind::evict, b, 0});
    queued = true;
  }
  if (queued) r_.wb_cv.notify_one();
}

bool WriteBack::evict_clean() {
  bool freed = false;
  r_.blocks.scan([&](std::uint64_t b, Block& blk) {
    if (blk.dirty || blk.queued) return false;
    queue(Work{Work::Kind::evict, b, 0});
    r_.wb_cv.notify_one();
    freed = true;
    return true;
  });
  return freed || busy_ || !work_.empty() || mirror_busy_ || !mirror_q_.empty();
}

void WriteBack::loop() {
  ::pthread_setname_np(::pthread_self(), "memlend-wback");
  std::unique_lock<std::mutex> lock(r_.mu);
  auto next_clean = Clock::now() + r_.cfg.clean_interval;
  while (!r_.stop) {
    if (r_.pending.writeback && !busy_) r_.link.writeback = std::move(r_.pending.writeback);
    if (work_.empty() || paused_) {
      if (r_.cfg.clean_interval.count() > 0) {
        if (Clock::now() >= next_clean) {
          next_clean = Clock::now() + r_.cfg.clean_interval;
          r_.blocks.scan([&](std::uint64_t b, Block& blk) {
            if (blk.dirty && !blk.queued) queue(Work{Work::Kind::clean, b, 0});
            return false;
          });
          continue;
        }
        r_.wb_cv.wait_until(lock, next_clean);
      } else {
        r_.wb_cv.wait(lock);
      }
      continue;
    }
    Work w = work_.front();
    work_.pop_front();
    busy_ = true;
    lock.unlock();
    bool done = write_back(w);
    lock.lock();
    busy_ = false;
    if (done && w.kind == Work::Kind::evict) --r_.queued_evictions;
    r_.cv.notify_all();
  }
}

// Called without the lock. Dirty blocks are write-protected first so that
// writers wait, then written to the donor here and to the mirror by the
// mirror writer at the same time: the block is held for the slower of the
// two, not for both in turn. Only once both are done is it dropped (evict)
// or marked clean (flush). False: the mirror writer finishes it.
bool WriteBack::write_back(const Work& w) {
  std::unique_lock<std::mutex> lock(r_.mu);
  if (w.kind == Work::Kind::flush_marker) {
    if (r_.cfg.mirror) {
      // In the mirror writer's queue order, so that it syncs only after
      // every block before it is in the file.
      mirror_q_.push_back(w);
      r_.mirror_cv.notify_one();
      return false;
    }
    marker_done_ = std::max(marker_done_, w.generation);
    r_.cv.notify_all();
    return true;
  }
  std::uint64_t b = w.block;
  Block& blk = r_.blocks[b];
  blk.queued = false;
  bool evict = w.kind == Work::Kind::evict;
  if (!blk.resident()) return true;
  if (!blk.dirty) {
    if (!evict) return true;
    ++r_.counts.clean_evictions;
    blk.start_write(0);
    drop(b, lock);
    return true;
  }
  if (r_.state == RegionState::failed) return true;  // its only copy
  bool remote = r_.state == RegionState::remote;
  bool mirror = r_.mirror_usable();
  blk.start_write(static_cast<std::uint8_t>(int{remote} + int{mirror}));
  auto* transport = r_.link.writeback.get();
  const std::uint8_t* src = r_.contents(b);
  // The fence: from here writers wait until the block is saved. Without it
  // a copy could miss a write, so no fence, no write-back.
  if (blk.fenced && !r_.space.write_protect(b, true)) {
    blk.stay(false);
    if (r_.error.empty()) r_.error = std::string("write-protecting a block failed: ") + std::strerror(errno);
    return true;
  }
  if (blk.saves == 0) {
    finish_write_back(b, evict, lock);
    return true;
  }
  if (mirror) {
    mirror_q_.push_back(w);
    r_.mirror_cv.notify_one();
  }
  if (!remote) return false;
  lock.unlock();
  std::uint64_t len = r_.space.length(b);
  Expected<Ticket> ticket = transport->post_write(r_.space.offset(b), src, len);
  Status d = ticket ? transport->wait(*ticket) : Status(ticket.error());
  if (!d) r_.donor_lost(d.error().message);
  lock.lock();
  if (d) r_.counts.bytes_written += len;
  r_.blocks[b].donor_saved = bool(d);
  return saved_once(b, evict, lock);
}

// One of a dirty block's copies (donor, mirror) is done; the second to be
// done finishes the write-back. True if this call did.
bool WriteBack::saved_once(std::uint64_t b, bool evict, std::unique_lock<std::mutex>& lock) {
  if (--r_.blocks[b].saves > 0) return false;
  finish_write_back(b, evict, lock);
  return true;
}

// A dirty block's write-back is over: saved by the donor, the mirror, both
// or neither. With the lock; gives it up while unmapping and waking.
void WriteBack::finish_write_back(std::uint64_t b, bool evict, std::unique_lock<std::mutex>& lock) {
  Block& blk = r_.blocks[b];
  bool saved = blk.donor_saved || blk.mirror_saved;
  if (saved) blk.zero = false;
  if (saved && evict) {
    blk.dirty = false;
    drop(b, lock);
    return;
  }
  // It stays: clean and still write-protected (the next write is seen), or,
  // if neither copy took it, dirty as the only copy. Eviction may have
  // passed over its entry in the FIFO while it was being written (and the
  // mirror queue makes that wait long): a new entry, or it would never be
  // evicted again.
  r_.blocks.enter(b);
  blk.stay(saved);
  if (!saved && blk.fenced) r_.space.write_protect(b, false);
  lock.unlock();
  r_.space.wake_block(b);
  lock.lock();
}

// Evicts block b (state writing, its contents saved or clean): unmapped, its
// memory freed, its slot in the buffer given back.
void WriteBack::drop(std::uint64_t b, std::unique_lock<std::mutex>& lock) {
  lock.unlock();
  r_.backing->punch(b);
  ++r_.counts.evictions;
  lock.lock();
  r_.blocks[b].leave();
  r_.backing->release_slot(b);
  --r_.resident;
  lock.unlock();
  r_.cv.notify_all();
  r_.space.wake_block(b);
  lock.lock();
}

// Writes the blocks the write-back thread is writing back to the mirror as
// well, in order. A block waits here still held in the buffer, so the mirror
// lags by no more than the buffer, and a block reaches the state (absent) in
// which faults would read it from the mirror only once it is in the mirror.
// On stopping it drains its queue.
void WriteBack::mirror_loop() {
  ::pthread_setname_np(::pthread_self(), "memlend-mirror");
  std::unique_lock<std::mutex> lock(r_.mu);
  for (;;) {
    if (mirror_q_.empty()) {
      if (r_.stop) return;
      r_.mirror_cv.wait(lock);
      continue;
    }
    Work job = mirror_q_.front();
    mirror_q_.pop_front();
    mirror_busy_ = true;
    bool usable = !r_.mirror_broken;
    if (job.kind == Work::Kind::flush_marker) {
      lock.unlock();
      Status s = usable ? r_.cfg.mirror->sync() : ok();
      lock.lock();
      if (!s) marker_result_ = s;
      marker_done_ = std::max(marker_done_, job.generation);
    } else {
      std::uint64_t b = job.block;
      std::uint64_t len = r_.space.length(b);
      const std::uint8_t* src = r_.contents(b);
      lock.unlock();
      Status m = usable ? r_.cfg.mirror->write(r_.cfg.mirror_offset + r_.space.offset(b), src, len)
                        : Error{"mirror broken"};
      lock.lock();
      if (usable && m) {
        r_.counts.mirror_bytes_written += len;
        if (r_.rehoming) r_.rehome_log.insert(b);
      }
      if (usable && !m) {
        // The mirror is no copy any more; the donor still is, if it
        // answered. Said at once: a donor failure from now on loses memory.
        r_.mirror_broken = true;
        r_.mirror_error = m.error().message;
        if (r_.error.empty()) r_.error = m.error().message;
        lock.unlock();
        r_.emit(RegionEvent::Kind::mirror_failed, r_.mirror_error);
        lock.lock();
      }
      bool evict = job.kind == Work::Kind::evict;
      r_.blocks[b].mirror_saved = usable && m;
      if (saved_once(b, evict, lock) && evict) --r_.queued_evictions;
    }
    mirror_busy_ = false;
    r_.cv.notify_all();
  }
}

// flush(): every dirty block goes through the write-back queue, then a marker
// whose turn says they are done. evict_all(): the same, evicting everything.
Status WriteBack::run_marker(bool evict) {
  std::unique_lock<std::mutex> lock(r_.mu);
  if (r_.detached) return Error{"region is detached"};
  r_.blocks.scan([&](std::uint64_t b, Block& blk) {
    if (!blk.queued && (evict || blk.dirty)) queue(Work{evict ? Work::Kind::evict : Work::Kind::clean, b, 0});
    return false;
  });
  std::uint64_t gen = ++marker_requested_;
  work_.push_back(Work{Work::Kind::flush_marker, 0, gen});
  marker_result_ = ok();
  r_.wb_cv.notify_one();
  // Every write-back step is bounded by the transport's I/O timeout; the
  // deadline covers a buffer's worth of them, and turns a bug into an error.
  const auto deadline =
      Clock::now() + r_.hand_over_limit() * std::max<std::uint64_t>(1, r_.plan.capacity + r_.plan.slots);
  while (marker_done_ < gen && !r_.stop && Clock::now() < deadline)
    r_.cv.wait_for(lock, std::chrono::milliseconds(100));
  if (marker_done_ < gen)
    return Error{r_.stop ? "region detached during flush" : "flush: write-backs did not finish by the deadline"};
  if (r_.state == RegionState::failed) return Error{"region failed: " + r_.error};
  if (r_.mirror_broken && r_.error.size()) return Error{"mirror: " + r_.error};
  return marker_result_;
}

}  // namespace memlend::rdma::region_detail
