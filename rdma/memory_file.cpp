#include "rdma/memory_file.hpp"
#include "rdma/connection_pool.hpp"
#include "rdma/protocol.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <vector>

namespace memlend::rdma {

namespace {

constexpr std::uint64_t no_slot = ~std::uint64_t{0};
constexpr std::size_t lock_stripes = 256;

enum class Health { active, degraded, lost };

struct FileLease {
  std::uint64_t id = 0;
  std::uint64_t slots = 0;
  Health health = Health::active;
  bool draining = false;  // being removed: no new placements
  std::shared_ptr<ConnectionPool> pool;
  // A re-home in progress: the new donor, and which slots it already holds.
  std::shared_ptr<ConnectionPool> next;
  std::vector<bool> moved;
  std::vector<std::uint32_t> free;  // slot numbers, a stack
};

// Where one block's transfer goes, looked up under the mutex and used
// without it (the block's lock keeps it true meanwhile).
struct Route {
  std::shared_ptr<ConnectionPool> donor;  // null: the donor is gone
  std::uint64_t lease = 0;                // index in leases
  std::uint64_t offset = 0;               // in the lease
};

}  // namespace

struct MemoryFile::Impl {
  MemoryFileConfig cfg;
  std::uint64_t blocks = 0;
  std::vector<std::shared_mutex> locks{lock_stripes};

  mutable std::mutex mu;
  std::uint64_t size = 0;
  std::vector<std::uint64_t> map;  // block → lease index << 32 | slot, or no_slot
  std::vector<std::unique_ptr<FileLease>> leases;  // removed ones stay null
  std::uint64_t placed = 0;
  bool mirror_broken = false;
  std::string error;

  struct {
    std::atomic<std::uint64_t> reads{0}, writes{0}, punches{0}, fetched{0}, zero_filled{0}, written_back{0},
        punched{0}, mirror_read{0}, mirror_written{0}, failovers{0}, rehomes{0};
  } counts;
  LatencyHistogram read_latency;

  std::shared_mutex& lock_of(std::uint64_t block) { return locks[block % lock_stripes]; }
  std::uint64_t block_start(std::uint64_t b) const { return b * cfg.block_bytes; }
  std::uint64_t block_length(std::uint64_t b) const {
    return std::min(cfg.block_bytes, cfg.bytes - block_start(b));
  }

  void emit(std::uint64_t lease, RegionEvent::Kind k, const std::string& detail) {
    if (cfg.on_event) cfg.on_event(lease, RegionEvent{k, detail});
  }

  FileLease* find_locked(std::uint64_t id) {
    for (auto& l : leases)
      if (l && l->id == id) return l.get();
    return nullptr;
  }

  // With mu held: where block b lives now; nullopt if it has no slot.
  std::optional<Route> route_locked(std::uint64_t b) const {
    if (map[b] == no_slot) return std::nullopt;
    return route_locked_slot(map[b] >> 32, map[b] & 0xffffffffu);
  }

  // With mu held: where slot `slot` of lease li is reached now.
  Route route_locked_slot(std::uint64_t li, std::uint64_t slot) const {
    const FileLease& l = *leases[li];
    Route r{nullptr, li, slot * cfg.block_bytes};
    if (l.health == Health::active) r.donor = l.pool;
    else if (l.next && l.moved[slot]) r.donor = l.next;
    return r;
  }

  std::optional<Route> route(std::uint64_t b) const {
    std::lock_guard<std::mutex> lock(mu);
    return route_locked(b);
  }

  // With mu held: takes a free slot, or nullopt. An active lease's first; a
  // degraded one's (the mirror alone holds the block until the lease is
  // re-homed, and the re-home copies it) only when no donor has room: a guest
  // that plugged memory before the donor died may still write any of it, and
  // a write refused then would be data the kernel drops.
  std::optional<Route> free_slot_locked(bool mirror_only_ok = true) {
    for (Health want : {Health::active, Health::degraded}) {
      if (want == Health::degraded && !mirror_only_ok) break;
      for (std::uint64_t li = 0; li < leases.size(); ++li) {
        auto& l = leases[li];
        if (!l || l->health != want || l->draining || l->free.empty()) continue;
        if (want == Health::degraded && (!cfg.mirror || mirror_broken)) continue;
        std::uint64_t slot = l->free.back();
        l->free.pop_back();
        auto r = route_locked_slot(li, slot);
        return r;
      }
    }
    return std::nullopt;
  }

  // With mu held: where block b lives, placing it first if it has no slot.
  std::optional<Route> place_locked(std::uint64_t b) {
    if (map[b] != no_slot) return route_locked(b);
    auto r = free_slot_locked();
    if (!r) return std::nullopt;
    map[b] = r->lease << 32 | (r->offset / cfg.block_bytes);
    ++placed;
    return r;
  }

  void unplace_locked(std::uint64_t b) {
    std::uint64_t li = map[b] >> 32, slot = map[b] & 0xffffffffu;
    leases[li]->free.push_back(static_cast<std::uint32_t>(slot));
    map[b] = no_slot;
    --placed;
  }

  bool mirror_usable() const {
    std::lock_guard<std::mutex> lock(mu);
    return cfg.mirror && !mirror_broken;
  }

  // A transfer to the lease's donor failed: it is gone for this file.
  void donor_lost(std::uint64_t li, const std::shared_ptr<ConnectionPool>& pool, const std::string& why) {
    std::string detail;
    bool mirrored = false;
    std::uint64_t id = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      FileLease* l = li < leases.size() ? leases[li].get() : nullptr;
      if (!l || l->health != Health::active || l->pool != pool) {
        // A re-home's new donor failed mid-copy: the re-home reports it.
        if (l && l->next == pool) l->next.reset();
        return;
      }
      mirrored = cfg.mirror && !mirror_broken;
      id = l->id;
      l->health = mirrored ? Health::degraded : Health::lost;
      detail = pool->target().where.addr + " (lease " + std::to_string(l->id) + "): " + why;
      error = "donor " + detail;
    }
    pool->interrupt();
    counts.failovers++;
    emit(id, RegionEvent::Kind::donor_failed, detail);
    emit(id, mirrored ? RegionEvent::Kind::failover_to_mirror : RegionEvent::Kind::region_failed, detail);
  }

  void mirror_lost(const std::string& why) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (mirror_broken) return;
      mirror_broken = true;
      error = "mirror: " + why;
    }
    // The mirror is the file's, not one lease's: told once, for the first.
    std::uint64_t first = 0;
    {
      std::lock_guard<std::mutex> lock(mu);
      for (auto& l : leases)
        if (l) {
          first = l->id;
          break;
        }
    }
    emit(first, RegionEvent::Kind::mirror_failed, why);
  }

  Status read_piece(std::uint64_t b, std::uint64_t in, std::uint8_t* dst, std::size_t n) {
    std::shared_lock<std::shared_mutex> block_lock(lock_of(b));
    auto r = route(b);
    if (!r) {
      std::memset(dst, 0, n);
      counts.zero_filled += n;
      return ok();
    }
    if (r->donor) {
      auto c = r->donor->take();
      if (c) {
        if (auto s = (*c)->read(r->offset + in, dst, n); s) {
          counts.fetched += n;
          return ok();
        } else {
          c->broken();
          donor_lost(r->lease, r->donor, s.error().message);
        }
      } else {
        donor_lost(r->lease, r->donor, c.error().message);
      }
    }
    if (!mirror_usable()) return Error{"block " + std::to_string(b) + ": its donor is gone and there is no mirror", ErrorCode::lost};
    if (auto s = cfg.mirror->read(block_start(b) + in, dst, n); !s) {
      mirror_lost(s.error().message);
      return Error{"block " + std::to_string(b) + ": donor gone and mirror unreadable: " + s.error().message, ErrorCode::lost};
    }
    counts.mirror_read += n;
    return ok();
  }

  // The donor and the mirror both, before the caller answers: a donor's death
  // then loses nothing that was written.
  Status write_piece(std::uint64_t b, std::uint64_t in, const std::uint8_t* src, std::size_t n, bool place) {
    std::shared_lock<std::shared_mutex> block_lock(lock_of(b));
    std::optional<Route> r;
    {
      std::lock_guard<std::mutex> lock(mu);
      r = place ? place_locked(b) : route_locked(b);
      if (!r && place) return Error{"no lent memory is free for block " + std::to_string(b), ErrorCode::refused};
      if (!r) return ok();  // zeros onto nothing: already zeros
    }
    std::optional<ConnectionPool::Lent> c;
    Expected<Ticket> posted = Error{"no donor"};
    if (r->donor) {
      if (auto t = r->donor->take(); t) {
        c.emplace(std::move(*t));
        posted = (*c)->post_write(r->offset + in, src, n);
      } else {
        posted = t.error();
      }
    }
    bool mirrored = false;
    if (mirror_usable()) {
      if (auto s = cfg.mirror->write(block_start(b) + in, src, n); s) {
        counts.mirror_written += n;
        mirrored = true;
      } else {
        mirror_lost(s.error().message);
      }
    }
    if (r->donor) {
      Status s = posted ? (*c)->wait(*posted) : Status(posted.error());
      if (s) {
        counts.written_back += n;
        return ok();
      }
      if (c) c->broken();
      donor_lost(r->lease, r->donor, s.error().message);
    }
    if (mirrored) return ok();
    return Error{"block " + std::to_string(b) + ": its donor is gone and there is no mirror", ErrorCode::lost};
  }

  Status punch_piece(std::uint64_t b, std::uint64_t in, std::size_t n) {
    if (in != 0 || n != block_length(b)) {
      static const std::vector<std::uint8_t> zeros(1 << 20);
      for (std::size_t done = 0; done < n;) {
        std::size_t k = std::min(n - done, zeros.size());
        if (auto s = write_piece(b, in + done, zeros.data(), k, false); !s) return s;
        done += k;
      }
      return ok();
    }
    std::unique_lock<std::shared_mutex> block_lock(lock_of(b));
    std::optional<Route> r;
    {
      std::lock_guard<std::mutex> lock(mu);
      r = route_locked(b);
      if (!r) return ok();
      unplace_locked(b);
    }
    counts.punched += n;
    if (r->donor) {
      // The slot is free again whatever the donor answers: a dead donor's
      // slots are never placed on, and a re-home starts from a fresh lease.
      if (auto c = r->donor->take(); c) {
        if (auto s = (*c)->discard(r->offset, n); !s) {
          c->broken();
          donor_lost(r->lease, r->donor, s.error().message);
        }
      }
    }
    return ok();
  }

  template <typename F>
  Status each_piece(std::uint64_t offset, std::uint64_t length, F&& f) {
    if (!wire::in_bounds(offset, length, cfg.bytes))
      return Error{"range " + std::to_string(offset) + "+" + std::to_string(length) +
                                           " is outside the file (" + std::to_string(cfg.bytes) + " bytes)", ErrorCode::refused};
    std::uint64_t done = 0;
    while (done < length) {
      std::uint64_t at = offset + done;
      std::uint64_t b = at / cfg.block_bytes, in = at % cfg.block_bytes;
      std::uint64_t n = std::min(length - done, block_length(b) - in);
      if (auto s = f(b, in, done, n); !s) return s;
      done += n;
    }
    return ok();
  }

  // Copies one block of a lease being emptied (remove) or refilled (rehome)
  // from where it can be read to `to`; the block's lock is held exclusive.
  Status copy_block(std::uint64_t b, const Route& from, ConnectionPool& to, std::uint64_t to_offset,
                    std::vector<std::uint8_t>& buf) {
    std::uint64_t n = block_length(b);
    buf.resize(n);
    bool have = false;
    if (from.donor) {
      if (auto c = from.donor->take(); c) {
        if (auto s = (*c)->read(from.offset, buf.data(), n); s) have = true;
        else c->broken();
      }
    }
    if (!have) {
      if (!mirror_usable()) return Error{"block " + std::to_string(b) + " cannot be read", ErrorCode::lost};
      if (auto s = cfg.mirror->read(block_start(b), buf.data(), n); !s) return s.error();
      counts.mirror_read += n;
    }
    auto c = to.take();
    if (!c) return c.error();
    if (auto s = (*c)->write(to_offset, buf.data(), n); !s) {
      c->broken();
      return s.error();
    }
    return ok();
  }

  // The blocks placed on lease li, in block order.
  std::vector<std::uint64_t> blocks_on_locked(std::uint64_t li) const {
    std::vector<std::uint64_t> out;
    for (std::uint64_t b = 0; b < blocks; ++b)
      if (map[b] != no_slot && (map[b] >> 32) == li) out.push_back(b);
    return out;
  }
};

MemoryFile::MemoryFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MemoryFile::~MemoryFile() {
  for (auto& l : impl_->leases)
    if (l) l->pool->interrupt();
}

Expected<std::unique_ptr<MemoryFile>> MemoryFile::create(const MemoryFileConfig& config) {
  if (config.bytes == 0) return Error{"a memory file needs a size", ErrorCode::invalid_input};
  if (config.block_bytes < 4096 || config.block_bytes % 4096 != 0)
    return Error{"the block size must be a multiple of 4 KiB", ErrorCode::invalid_input};
  if (config.mirror && config.mirror->bytes() < config.bytes)
    if (auto s = config.mirror->resize(config.bytes); !s) return s.error();
  auto impl = std::make_unique<Impl>();
  impl->cfg = config;
  impl->blocks = (config.bytes + config.block_bytes - 1) / config.block_bytes;
  impl->map.assign(impl->blocks, no_slot);
  impl->size = config.bytes;
  return std::unique_ptr<MemoryFile>(new MemoryFile(std::move(impl)));
}

Status MemoryFile::add_lease(std::uint64_t id, const LeaseTarget& target) {
  auto& r = *impl_;
  std::uint64_t slots = target.bytes / r.cfg.block_bytes;
  if (slots == 0) return Error{"lease " + std::to_string(id) + " is smaller than one block", ErrorCode::invalid_input};
  if (slots > 0xffffffffu) return Error{"lease " + std::to_string(id) + " is too large", ErrorCode::invalid_input};
  auto l = std::make_unique<FileLease>();
  l->id = id;
  l->slots = slots;
  l->pool = std::make_shared<ConnectionPool>(target, r.cfg.transport, r.cfg.timeouts, r.cfg.connections);
  // Reached once now, so that a wrong secret or a dead donor is an error
  // here and not the guest's first page fault.
  if (auto c = l->pool->take(); !c) return c.error();
  l->free.reserve(slots);
  for (std::uint64_t s = slots; s-- > 0;) l->free.push_back(static_cast<std::uint32_t>(s));
  std::lock_guard<std::mutex> lock(r.mu);
  if (r.find_locked(id)) return Error{"lease " + std::to_string(id) + " is already in the file", ErrorCode::invalid_input};
  if (r.leases.size() >= 0xffffffffu) return Error{"too many leases", ErrorCode::refused};
  r.leases.push_back(std::move(l));
  return ok();
}

Status MemoryFile::remove_lease(std::uint64_t id) {
  auto& r = *impl_;
  std::uint64_t li = 0;
  std::vector<std::uint64_t> blocks;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    FileLease* l = r.find_locked(id);
    if (!l) return Error{"lease " + std::to_string(id) + " is not in the file", ErrorCode::invalid_input};
    while (r.leases[li].get() != l) ++li;
    blocks = r.blocks_on_locked(li);
    std::uint64_t room = 0;
    for (auto& o : r.leases)
      if (o && o.get() != l && o->health == Health::active && !o->draining) room += o->free.size();
    if (room < blocks.size())
      return Error{"lease " + std::to_string(id) + " holds " + std::to_string(blocks.size()) +
                                           " blocks and the other leases have room for " + std::to_string(room), ErrorCode::refused};
    l->draining = true;
  }
  std::vector<std::uint8_t> buf;
  auto stop_draining = [&] {
    std::lock_guard<std::mutex> lock(r.mu);
    r.leases[li]->draining = false;
  };
  for (std::uint64_t b : blocks) {
    std::unique_lock<std::shared_mutex> block_lock(r.lock_of(b));
    std::optional<Route> from, to;
    {
      std::lock_guard<std::mutex> lock(r.mu);
      from = r.route_locked(b);
      if (!from || from->lease != li) continue;  // punched meanwhile
      to = r.free_slot_locked(false);
    }
    if (!to) {
      stop_draining();
      return Error{"no room left to move block " + std::to_string(b), ErrorCode::refused};
    }
    if (auto s = r.copy_block(b, *from, *to->donor, to->offset, buf); !s) {
      {
        std::lock_guard<std::mutex> lock(r.mu);
        r.leases[to->lease]->free.push_back(static_cast<std::uint32_t>(to->offset / r.cfg.block_bytes));
      }
      stop_draining();
      return Error{"moving block " + std::to_string(b) + " off lease " + std::to_string(id) + ": " + s.error().message, s.error().code};
    }
    std::lock_guard<std::mutex> lock(r.mu);
    r.map[b] = to->lease << 32 | (to->offset / r.cfg.block_bytes);
  }
  std::unique_ptr<FileLease> gone;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    gone = std::move(r.leases[li]);
  }
  gone->pool->interrupt();
  return ok();
}

void MemoryFile::fail_over(std::uint64_t id, const std::string& reason) {
  auto& r = *impl_;
  std::shared_ptr<ConnectionPool> pool;
  std::uint64_t li = 0;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    for (; li < r.leases.size(); ++li)
      if (r.leases[li] && r.leases[li]->id == id) break;
    if (li == r.leases.size()) return;
    pool = r.leases[li]->pool;
  }
  r.donor_lost(li, pool, reason);
}

Status MemoryFile::rehome(std::uint64_t id, std::uint64_t new_id, const LeaseTarget& target) {
  auto& r = *impl_;
  std::uint64_t li = 0;
  auto next = std::make_shared<ConnectionPool>(target, r.cfg.transport, r.cfg.timeouts, r.cfg.connections);
  if (auto c = next->take(); !c) return c.error();
  std::vector<std::uint64_t> blocks;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    FileLease* l = r.find_locked(id);
    if (!l) return Error{"lease " + std::to_string(id) + " is not in the file", ErrorCode::invalid_input};
    if (l->health == Health::active) return Error{"lease " + std::to_string(id) + " has its donor", ErrorCode::refused};
    if (l->health == Health::lost) return Error{"lease " + std::to_string(id) + " had no mirror: its blocks are gone", ErrorCode::lost};
    if (l->next) return Error{"lease " + std::to_string(id) + " is being re-homed already", ErrorCode::refused};
    if (new_id != id && r.find_locked(new_id))
      return Error{"lease " + std::to_string(new_id) + " is in the file already", ErrorCode::invalid_input};
    if (target.bytes < l->slots * r.cfg.block_bytes) return Error{"the new lease is smaller than the old one", ErrorCode::invalid_input};
    while (r.leases[li].get() != l) ++li;
    l->next = next;
    l->moved.assign(l->slots, false);
    blocks = r.blocks_on_locked(li);
  }
  std::vector<std::uint8_t> buf;
  // Blocks first written while the copy runs land on the mirror alone: each
  // pass copies what the last one did not see, and the switch happens only
  // under the same lock that finds nothing left to copy.
  for (;;) {
    for (std::uint64_t b : blocks) {
      std::unique_lock<std::shared_mutex> block_lock(r.lock_of(b));
      std::optional<Route> from;
      {
        std::lock_guard<std::mutex> lock(r.mu);
        from = r.route_locked(b);
        if (!from || from->lease != li || r.leases[li]->moved[from->offset / r.cfg.block_bytes]) continue;
      }
      if (auto s = r.copy_block(b, *from, *next, from->offset, buf); !s) {
        std::lock_guard<std::mutex> lock(r.mu);
        r.leases[li]->next.reset();
        r.leases[li]->moved.clear();
        return Error{"re-homing lease " + std::to_string(id) + ": " + s.error().message, s.error().code};
      }
      std::lock_guard<std::mutex> lock(r.mu);
      r.leases[li]->moved[from->offset / r.cfg.block_bytes] = true;
    }
    std::lock_guard<std::mutex> lock(r.mu);
    auto& l = *r.leases[li];
    blocks.clear();
    for (std::uint64_t b : r.blocks_on_locked(li))
      if (!l.moved[(r.map[b] & 0xffffffffu)]) blocks.push_back(b);
    if (!blocks.empty()) continue;
    l.pool = std::move(l.next);
    l.id = new_id;
    l.moved.clear();
    l.health = Health::active;
    // Slots freed while the donor was gone were never discarded there; the
    // new lease is fresh, so every free slot holds zeros again.
    r.error.clear();
    break;
  }
  r.counts.rehomes++;
  r.emit(new_id, RegionEvent::Kind::rehomed, "lease " + std::to_string(id) + " now at " + target.where.addr + " as lease " + std::to_string(new_id));
  return ok();
}

Status MemoryFile::read(std::uint64_t offset, void* dst, std::size_t length) {
  auto& r = *impl_;
  auto t0 = Clock::now();
  auto* p = static_cast<std::uint8_t*>(dst);
  auto s = r.each_piece(offset, length, [&](std::uint64_t b, std::uint64_t in, std::uint64_t done, std::uint64_t n) {
    return r.read_piece(b, in, p + done, n);
  });
  r.counts.reads++;
  r.read_latency.record(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
  return s;
}

Status MemoryFile::write(std::uint64_t offset, const void* src, std::size_t length) {
  auto& r = *impl_;
  const auto* p = static_cast<const std::uint8_t*>(src);
  r.counts.writes++;
  return r.each_piece(offset, length, [&](std::uint64_t b, std::uint64_t in, std::uint64_t done, std::uint64_t n) {
    return r.write_piece(b, in, p + done, n, true);
  });
}

Status MemoryFile::punch(std::uint64_t offset, std::uint64_t length) {
  auto& r = *impl_;
  r.counts.punches++;
  auto s = r.each_piece(offset, length, [&](std::uint64_t b, std::uint64_t in, std::uint64_t, std::uint64_t n) {
    return r.punch_piece(b, in, n);
  });
  if (!s) return s;
  if (r.mirror_usable())
    if (auto m = r.cfg.mirror->punch(offset, length); !m) r.mirror_lost(m.error().message);
  return ok();
}

Status MemoryFile::resize(std::uint64_t bytes) {
  auto& r = *impl_;
  if (bytes > r.cfg.bytes)
    return Error{"the memory file holds at most " + std::to_string(r.cfg.bytes) + " bytes", ErrorCode::refused};
  std::uint64_t old;
  {
    std::lock_guard<std::mutex> lock(r.mu);
    old = r.size;
    r.size = bytes;
  }
  if (bytes < old) return punch(bytes, old - bytes);
  return ok();
}

Status MemoryFile::flush() {
  auto& r = *impl_;
  if (!r.mirror_usable()) return ok();
  if (auto s = r.cfg.mirror->sync(); !s) {
    r.mirror_lost(s.error().message);
    return s;
  }
  return ok();
}

std::vector<std::uint64_t> MemoryFile::lease_ids() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  std::vector<std::uint64_t> out;
  for (auto& l : impl_->leases)
    if (l) out.push_back(l->id);
  return out;
}

std::uint64_t MemoryFile::size() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->size;
}
std::uint64_t MemoryFile::capacity() const { return impl_->cfg.bytes; }
std::uint64_t MemoryFile::block_bytes() const { return impl_->cfg.block_bytes; }

MemoryFileStats MemoryFile::stats() const {
  auto& r = *impl_;
  MemoryFileStats s;
  s.reads = r.counts.reads;
  s.writes = r.counts.writes;
  s.punches = r.counts.punches;
  s.bytes_fetched = r.counts.fetched;
  s.bytes_zero_filled = r.counts.zero_filled;
  s.bytes_written_back = r.counts.written_back;
  s.bytes_punched = r.counts.punched;
  s.mirror_bytes_read = r.counts.mirror_read;
  s.mirror_bytes_written = r.counts.mirror_written;
  s.failovers = r.counts.failovers;
  s.rehomes = r.counts.rehomes;
  s.read_latency = r.read_latency.snapshot();
  std::lock_guard<std::mutex> lock(r.mu);
  s.blocks_placed = r.placed;
  for (auto& l : r.leases) {
    if (!l) continue;
    ++s.leases;
    s.slots += l->slots;
    s.degraded_leases += l->health == Health::degraded;
    s.lost_leases += l->health == Health::lost;
  }
  s.mirror_failed = r.mirror_broken;
  s.error = r.error;
  return s;
}

}  // namespace memlend::rdma
