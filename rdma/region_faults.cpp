// The fault thread: reads the userfaultfd, fetches what faults need (and
// reads ahead of a sequential stream), maps it, and sees first writes.
#include "rdma/region_impl.hpp"

#include <cerrno>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>

namespace memlend::rdma::region_detail {

void FaultLoop::start() {
  thread_ = std::thread([this] { loop(); });
}

void FaultLoop::join() {
  if (thread_.joinable()) thread_.join();
}

void FaultLoop::loop() {
  ::pthread_setname_np(::pthread_self(), "memlend-fault");
  uffd_msg msgs[32];
  auto last_event = Clock::now();
  std::unique_lock<std::mutex> lock(r_.mu);
  while (!r_.stop) {
    install_pending(lock);
    lock.unlock();
    ssize_t n = ::read(r_.space.uffd.get(), msgs, sizeof msgs);
    lock.lock();
    if (n > 0) {
      for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(uffd_msg)); ++i) {
        if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
        auto t0 = Clock::now();
        std::uint64_t off = msgs[i].arg.pagefault.address - r_.space.base;
        if (off >= r_.space.mapped) continue;
        std::uint64_t b = off / r_.space.block;
        std::uint64_t addr = msgs[i].arg.pagefault.address & ~(r_.space.page - 1);
        if (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
          handle_write_fault(b, addr, lock);
        else
          handle_read_fault(b, addr, lock);
        r_.latency.record(static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
      }
      last_event = Clock::now();
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) break;
    // Idle: finish read-ahead first, it is what the stream will touch next.
    if (!inflight_.empty()) {
      complete_oldest(lock);
      continue;
    }
    if (r_.cfg.spin.count() > 0 && Clock::now() - last_event < r_.cfg.spin) continue;
    if (idle(lock)) return;
  }
}

// Sleeps until a fault, a wake-up or the handing process's exit.
bool FaultLoop::idle(std::unique_lock<std::mutex>& lock) {
  lock.unlock();
  const UniqueFd& peer = r_.peer;
  pollfd p[3] = {{r_.space.uffd.get(), POLLIN, 0}, {r_.wake.get(), POLLIN, 0}, {peer ? peer.get() : -1, POLLIN, 0}};
  int ready = ::poll(p, 3, -1);
  if (ready > 0 && p[1].revents) {
    std::uint64_t v;
    (void)!::read(r_.wake.get(), &v, sizeof v);
  }
  bool peer_gone = false;
  if (ready > 0 && p[2].revents) {
    char c;
    peer_gone = ::recv(peer.get(), &c, 1, MSG_DONTWAIT) <= 0;
  }
  lock.lock();
  if (!peer_gone) return false;
  // The process that handed its memory over is gone, and its address space
  // with it: nothing more to serve.
  r_.state = RegionState::detached;
  r_.stop = true;
  lock.unlock();
  r_.emit(RegionEvent::Kind::recipient_gone, "the process that handed its memory over exited");
  r_.wb_cv.notify_all();
  r_.mirror_cv.notify_all();
  r_.cv.notify_all();
  return true;
}

// A re-home's new link is taken here, by the thread whose reads use it.
void FaultLoop::install_pending(std::unique_lock<std::mutex>& lock) {
  if (!r_.pending.fetch) return;
  // In-flight reads belong to the old connection: take them from the mirror.
  refetch_inflight_from_mirror(lock);
  r_.link.fetch = std::move(r_.pending.fetch);
  r_.state = RegionState::remote;
  r_.error.clear();
  r_.rehoming = false;
  r_.cv.notify_all();
  wb_.resume();
}

void FaultLoop::handle_write_fault(std::uint64_t b, std::uint64_t addr, std::unique_lock<std::mutex>& lock) {
  Block& blk = r_.blocks[b];
  if (blk.state == BlockState::mapped) {
    ++r_.counts.write_faults;
    blk.dirty = true;
    // Under the lock: a write-back's fence must never be undone by a late
    // clear from here.
    r_.space.write_protect(b, false);
    return;
  }
  if (blk.state == BlockState::writing) return;  // the write-back wakes it when done
  // Stale (the block left meanwhile): the retry will say what it needs.
  lock.unlock();
  r_.space.wake(addr - r_.space.base, r_.space.page);
  lock.lock();
}

void FaultLoop::handle_read_fault(std::uint64_t b, std::uint64_t addr, std::unique_lock<std::mutex>& lock) {
  ++r_.counts.faults;
  bool sequential = b > 0 && r_.blocks[b - 1].state != BlockState::absent && r_.blocks[b - 1].state != BlockState::lost;
  for (;;) {
    Block& blk = r_.blocks[b];
    switch (blk.state) {
      case BlockState::absent:
        if (r_.state == RegionState::failed) {
          lose_block(b);
          return;
        }
        if (!claim_slot(lock, true)) {
          // Stopping, or failed while waiting.
          if (r_.state == RegionState::failed) lose_block(b);
          return;
        }
        {
          bool staged = take_slot(b, lock, true);
          if (!staged || r_.blocks[b].state != BlockState::absent) {  // both may let go of the lock
            r_.backing->release_slot(b);
            --r_.resident;
            if (!staged) return;  // stopping
            continue;
          }
        }
        start_fetch(b, lock);
        ++r_.counts.fetches;
        if (sequential) read_ahead(b, lock);
        continue;
      case BlockState::fetching:
        complete_until(b, lock);
        if (r_.blocks[b].state == BlockState::fetching) return;  // stopping
        continue;
      case BlockState::writing:
        // Being written back: the write-back thread wakes the whole block
        // when it is done, and the retry finds it resident or absent.
        return;
      case BlockState::unmapped: {
        // A read-ahead marker (or a block that arrived unmapped): map it,
        // and the stream goes on.
        bool was_marker = blk.marker;
        blk.marker = false;
        if (r_.backing->map(b, !blk.dirty)) r_.blocks[b].map();
        if (was_marker) read_ahead(b, lock);
        return;
      }
      case BlockState::mapped:
        r_.backing->map_page(addr, !blk.dirty);
        r_.space.wake(addr - r_.space.base, r_.space.page);
        return;
      case BlockState::lost:
        lose_block(b);
        return;
    }
  }
}

// Takes a staging slot for block b's fetch, where the backing needs one.
// Without waiting, none may be free.
bool FaultLoop::take_slot(std::uint64_t b, std::unique_lock<std::mutex>& lock, bool wait) {
  Backing& backing = *r_.backing;
  if (!backing.stages(r_.blocks[b].zero)) return true;
  while (!backing.slot_free()) {
    if (!wait || r_.stop) return false;
    install_pending(lock);  // as in claim_slot: the write-back may be held for it
    if (!inflight_.empty()) {
      complete_oldest(lock);
      continue;
    }
    // Every slot holds a block that arrived unmapped: map one, losing only
    // a read-ahead marker.
    bool freed = false;
    r_.blocks.scan([&](std::uint64_t v, Block& blk) {
      if (blk.state != BlockState::unmapped || !backing.holds_slot(v)) return false;
      blk.marker = false;
      if (backing.map(v, !blk.dirty)) blk.map();
      freed = blk.state == BlockState::mapped;
      return true;
    });
    // Or one is being evicted: the write-back thread (or the mirror writer)
    // says when it is done.
    if (!freed) r_.cv.wait_for(lock, std::chrono::milliseconds(100));
  }
  backing.stage(b);
  return true;
}

// Takes one slot of the buffer for a block about to be read. Evictions run
// in the write-back thread; here we only wait when the buffer is really full.
bool FaultLoop::claim_slot(std::unique_lock<std::mutex>& lock, bool wait) {
  for (;;) {
    if (r_.stop) return false;
    // A re-home holds the write-back thread until this thread takes the new
    // link: waiting here for the slot a write-back would free, without
    // taking it, waited forever.
    if (wait) install_pending(lock);
    if (r_.resident < r_.plan.capacity) {
      ++r_.resident;
      wb_.queue_eviction_ahead();
      return true;
    }
    if (!wait) return false;
    // Read-ahead in flight holds slots the fault needs: land it first.
    wb_.queue_eviction_ahead();
    if (r_.queued_evictions == 0 && !wb_.busy() && !inflight_.empty()) {
      complete_oldest(lock);
      continue;
    }
    // Failed: nothing can be written back any more; only clean blocks can go.
    if (r_.state == RegionState::failed && !wb_.evict_clean()) return false;
    r_.cv.wait_for(lock, std::chrono::milliseconds(100));
  }
}

void FaultLoop::start_fetch(std::uint64_t b, std::unique_lock<std::mutex>& lock) {
  Block& blk = r_.blocks[b];
  blk.fetch();
  // Nothing to fetch for a zero block: fresh zeroed pages are what the
  // donor would send.
  r_.backing->ready(b, blk.zero);
  if (blk.zero) {
    arrived(b);
    return;
  }
  if (r_.state == RegionState::remote) {
    auto t = r_.link.fetch->post_read(r_.space.offset(b), r_.backing->landing(b), r_.space.length(b));
    if (t) {
      inflight_.emplace_back(*t, b);
      return;
    }
    lock.unlock();
    r_.donor_lost(t.error().message);
    lock.lock();
  }
  inflight_.emplace_back(0, b);
  refetch_inflight_from_mirror(lock);
}

void FaultLoop::read_ahead(std::uint64_t b, std::unique_lock<std::mutex>& lock) {
  unsigned depth = r_.plan.depth;
  if (depth == 0) return;
  std::uint64_t last = std::min<std::uint64_t>(b + depth, r_.blocks.size() - 1);
  for (std::uint64_t n = b + 1; n <= last; ++n) {
    if (r_.blocks[n].state != BlockState::absent) continue;
    if (!claim_slot(lock, false)) break;
    if (!take_slot(n, lock, false)) {
      --r_.resident;
      break;
    }
    start_fetch(n, lock);
    ++r_.counts.prefetches;
  }
  // A block about halfway that is not mapped yet stays unmapped: its fault,
  // a cheap one, says the stream has got there and moves the window on.
  for (std::uint64_t n = b + (depth + 1) / 2; n <= last; ++n) {
    Block& blk = r_.blocks[n];
    if (blk.state == BlockState::fetching || blk.state == BlockState::unmapped) {
      blk.marker = true;
      break;
    }
  }
}

void FaultLoop::complete_oldest(std::unique_lock<std::mutex>& lock) {
  if (!inflight_.empty()) complete_until(inflight_.front().second, lock);
}

// Completes in-flight reads in order, up to and including block b's.
void FaultLoop::complete_until(std::uint64_t b, std::unique_lock<std::mutex>& lock) {
  while (!inflight_.empty()) {
    auto [ticket, block] = inflight_.front();
    if (r_.state != RegionState::remote || ticket == 0) {
      refetch_inflight_from_mirror(lock);
      return;
    }
    auto* transport = r_.link.fetch.get();
    lock.unlock();
    Status s = transport->wait(ticket);
    lock.lock();
    if (!s) {
      lock.unlock();
      r_.donor_lost(s.error().message);
      lock.lock();
      continue;
    }
    inflight_.pop_front();
    r_.counts.bytes_read += r_.space.length(block);
    arrived(block);
    if (block == b) return;
  }
}

// The donor is gone: what was on its way comes from the mirror instead, or,
// without one, is lost.
void FaultLoop::refetch_inflight_from_mirror(std::unique_lock<std::mutex>& lock) {
  while (!inflight_.empty()) {
    std::uint64_t b = inflight_.front().second;
    inflight_.pop_front();
    if (r_.state == RegionState::failed || !r_.mirror_usable()) {
      --r_.resident;
      lose_block(b);
      continue;
    }
    lock.unlock();
    Status s = r_.cfg.mirror->read(r_.cfg.mirror_offset + r_.space.offset(b), r_.backing->landing(b),
                                   r_.space.length(b));
    lock.lock();
    if (!s) {
      r_.mirror_broken = true;
      r_.mirror_error = s.error().message;
      r_.state = RegionState::failed;
      r_.error = s.error().message;
      --r_.resident;
      lose_block(b);
      lock.unlock();
      r_.emit(RegionEvent::Kind::region_failed, s.error().message);
      lock.lock();
      continue;
    }
    r_.counts.mirror_bytes_read += r_.space.length(b);
    arrived(b);
  }
}

// A block's bytes are in the buffer: map it (write-protected, so its first
// write is seen), unless it is the read-ahead marker.
void FaultLoop::arrived(std::uint64_t b) {
  Block& blk = r_.blocks[b];
  blk.arrive(!r_.wp_installs);
  r_.blocks.enter(b);
  if (blk.marker) return;
  if (r_.backing->map(b, r_.wp_installs)) blk.map();
}

// A block no one can serve: poison it so that touching it raises SIGBUS (a
// VMM turns that into a memory error for its guest) rather than hanging.
void FaultLoop::lose_block(std::uint64_t b) {
  r_.backing->release_slot(b);
  bool again = r_.blocks[b].lose();
  const Space& space = r_.space;
  if (r_.can_poison && !again) {
    // Write-protect markers left by earlier write-backs would make the
    // poison fail (EEXIST) and the fault come back forever: clear them first.
    space.write_protect(b, false);
    uffdio_poison p{{space.base + space.offset(b), space.span(b)}, 0, 0};
    if (::ioctl(space.uffd.get(), UFFDIO_POISON, &p) == 0) {
      space.wake_block(b);
      return;
    }
  }
  // No poison on this kernel (or it did not take): zeros, loudly — the
  // region's state and error say its data is lost.
  r_.backing->zero_lost(b);
  r_.backing->map(b, false);
}

}  // namespace memlend::rdma::region_detail
