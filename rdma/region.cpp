#include "rdma/region.hpp"

#include "rdma/region_impl.hpp"

#include <array>
#include <cerrno>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <vector>

namespace memlend::rdma {

const char* region_state_name(RegionState s) {
  switch (s) {
    case RegionState::remote: return "remote";
    case RegionState::degraded: return "degraded";
    case RegionState::failed: return "failed";
    case RegionState::detached: return "detached";
  }
  return "?";
}

const char* region_backing_name(RegionBacking b) {
  switch (b) {
    case RegionBacking::automatic: return "automatic";
    case RegionBacking::anonymous: return "anonymous";
    case RegionBacking::memfd: return "memfd";
  }
  return "?";
}

const char* region_event_name(RegionEvent::Kind k) {
  switch (k) {
    case RegionEvent::Kind::donor_failed: return "donor_failed";
    case RegionEvent::Kind::failover_to_mirror: return "failover_to_mirror";
    case RegionEvent::Kind::rehomed: return "lease_rehomed";
    case RegionEvent::Kind::region_failed: return "region_failed";
    case RegionEvent::Kind::recipient_gone: return "recipient_gone";
    case RegionEvent::Kind::mirror_failed: return "mirror_failed";
  }
  return "?";
}

Expected<DonorLink> connect_link(const LeaseTarget& lease, TransportKind kind, const Timeouts& timeouts) {
  auto fetch = connect_lease(lease, kind, timeouts);
  if (!fetch) return fetch.error();
  auto writeback = connect_lease(lease, kind, timeouts);
  if (!writeback) return writeback.error();
  return DonorLink{std::move(*fetch), std::move(*writeback)};
}

namespace region_detail {

void RegionCore::donor_lost(const std::string& reason) {
  bool to_mirror = false;
  std::string no_mirror = "no mirror: blocks not in the buffer are lost";
  {
    std::lock_guard<std::mutex> lock(mu);
    if (state != RegionState::remote) return;
    to_mirror = mirror_usable();
    if (cfg.mirror && mirror_broken)
      no_mirror = "the mirror could not be written (" + mirror_error + "): blocks not in the buffer are lost";
    state = to_mirror ? RegionState::degraded : RegionState::failed;
    error = reason;
    interrupt_links();
  }
  ++counts.failovers;
  emit(RegionEvent::Kind::donor_failed, reason);
  if (to_mirror)
    emit(RegionEvent::Kind::failover_to_mirror, "serving from " + cfg.mirror->path());
  else
    emit(RegionEvent::Kind::region_failed, no_mirror);
  cv.notify_all();
  wb_cv.notify_all();
  signal_fault_thread();
}

namespace {

class Region final : public RemoteRegion {
 public:
  Region(const RegionConfig& config, DonorLink link) : r_(config, std::move(link)) {}
  ~Region() override { (void)detach(); }

  // Own memory: anonymous where it can be, else a memfd mapped twice, one
  // view faulting, one not.
  Status init_owned() {
    set_space(round_up(r_.cfg.bytes, page_size()));
    auto backing = own_backing(r_.space, r_.cfg, r_.link);
    if (!backing) return backing.error();
    r_.backing = std::move(*backing);
    auto fd = new_userfaultfd();
    if (!fd) return fd.error();
    r_.space.uffd = std::move(*fd);
    return init_common();
  }

  Status init_adopted(HandedRegion handed) {
    if (handed.region.bytes != round_up(r_.cfg.bytes, page_size()))
      return Error{"handed region is " + std::to_string(handed.region.bytes) + " bytes, the lease " +
                   std::to_string(r_.cfg.bytes)};
    set_space(handed.region.bytes);
    r_.space.base = handed.region.base;
    r_.space.uffd = std::move(handed.uffd);
    r_.peer = std::move(handed.peer);
    r_.backing = adopted_backing(r_.space, std::move(handed.memfd), handed.region.memfd_offset);
    int flags = ::fcntl(r_.space.uffd.get(), F_GETFL);
    ::fcntl(r_.space.uffd.get(), F_SETFL, flags | O_NONBLOCK);
    return init_common();
  }

  void* data() const override { return r_.backing ? r_.backing->view() : nullptr; }
  std::uint64_t size() const override { return r_.cfg.bytes; }

  Status flush() override { return wb_.run_marker(false); }

  Status evict_all() override {
    // The marker evicts what was resident and idle when it was queued; a block
    // then busy (its write-back or mirror write in flight, or a read-ahead
    // fetch landing) stays. Each round is bounded, and once the faults that
    // feed read-ahead have stopped, a round or two leaves nothing resident.
    for (int round = 0; round < 16; ++round) {
      if (auto s = wb_.run_marker(true); !s) return s;
      std::lock_guard<std::mutex> lock(r_.mu);
      if (r_.resident == 0) break;
    }
    return ok();
  }

  void fail_over(const std::string& reason) override { r_.donor_lost(reason); }

  Status rehome(DonorLink link) override;

  Status detach() override {
    {
      std::lock_guard<std::mutex> lock(r_.mu);
      if (r_.detached) return ok();
      r_.detached = true;
      r_.stop = true;
      r_.halting = true;
      if (r_.state != RegionState::failed) r_.state = RegionState::detached;
      r_.interrupt_links();
    }
    r_.cv.notify_all();
    r_.wb_cv.notify_all();
    r_.signal_fault_thread();
    faults_.join();
    wb_.join();
    if (r_.space.uffd && r_.registered) {
      // Wakes anything still blocked on a fault in the range.
      uffdio_range range{r_.space.base, r_.space.mapped};
      ::ioctl(r_.space.uffd.get(), UFFDIO_UNREGISTER, &range);
    }
    if (r_.backing) r_.backing->release();
    r_.space.uffd.reset();
    return ok();
  }

  RegionState state() const override {
    std::lock_guard<std::mutex> lock(r_.mu);
    return r_.state;
  }

  RegionStats stats() const override {
    RegionStats s;
    {
      std::lock_guard<std::mutex> lock(r_.mu);
      s.state = r_.state;
      s.error = r_.error;
      s.resident_bytes = r_.resident * r_.space.block;
      s.mirror_failed = r_.mirror_broken;
      s.mirror_error = r_.mirror_error;
    }
    const Counters& c = r_.counts;
    s.faults = c.faults;
    s.write_faults = c.write_faults;
    s.fetches = c.fetches;
    s.prefetches = c.prefetches;
    s.evictions = c.evictions;
    s.clean_evictions = c.clean_evictions;
    s.bytes_read = c.bytes_read;
    s.bytes_written = c.bytes_written;
    s.mirror_bytes_read = c.mirror_bytes_read;
    s.mirror_bytes_written = c.mirror_bytes_written;
    s.failovers = c.failovers;
    s.rehomes = c.rehomes;
    s.buffer_bytes = (r_.plan.capacity + r_.plan.slots) * r_.space.block;
    s.block_bytes = r_.space.block;
    s.dirty_tracking = r_.wp_installs;
    s.backing = r_.backing ? r_.backing->kind() : RegionBacking::memfd;
    s.fault_latency = r_.latency.snapshot();
    return s;
  }

 private:
  static std::uint64_t page_size() { return static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)); }
  void set_space(std::uint64_t mapped) {
    Space& sp = r_.space;
    sp.page = page_size();
    sp.bytes = r_.cfg.bytes;
    sp.mapped = mapped;
    sp.block = std::min(round_up(std::max<std::uint64_t>(r_.cfg.block_bytes, 1), sp.page), mapped);
  }
  Status init_common();
  static constexpr std::uint64_t copy_chunk = 1 << 20;
  using CopyBuffers = std::array<std::vector<std::uint8_t>, 2>;
  Status copy_from_mirror(LeaseConnection& to, CopyBuffers& buf, std::uint64_t from, std::uint64_t len);
  Status fail_rehome(const Error& e);

  RegionCore r_;
  WriteBack wb_{r_};
  FaultLoop faults_{r_, wb_};
};

Status Region::init_common() {
  const auto& k = kernel_support();
  if (!k.error.empty()) return Error{k.error};
  Backing& backing = *r_.backing;
  r_.wp_installs = backing.write_protects(k);
  r_.can_poison = (k.features & UFFD_FEATURE_POISON) != 0;
  uffdio_api api{UFFD_API, backing.features() | (r_.can_poison ? UFFD_FEATURE_POISON : 0), 0};
  if (::ioctl(r_.space.uffd.get(), UFFDIO_API, &api) != 0)
    return sys_error("userfaultfd handshake (a handed-over descriptor must be fresh)", errno);
  uffdio_register reg{{r_.space.base, r_.space.mapped}, backing.register_modes(), 0};
  if (::ioctl(r_.space.uffd.get(), UFFDIO_REGISTER, &reg) != 0)
    return sys_error("userfaultfd register (the range must be a shared memfd mapping)", errno);
  r_.registered = true;
  r_.wake = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));

  std::uint64_t total = std::max<std::uint64_t>(1, r_.cfg.buffer_bytes / r_.space.block);
  auto plan = backing.prepare(total, r_.cfg.prefetch_blocks);
  if (!plan) return plan.error();
  r_.plan = *plan;
  Block initial;
  initial.zero = r_.cfg.fresh_lease;
  r_.blocks.assign(r_.space.count(), initial);
  for (auto* t : {r_.link.fetch.get(), r_.link.writeback.get()}) {
    if (!t) return Error{"region needs a fetch and a write-back connection"};
    if (t->lease_bytes() < r_.cfg.bytes)
      return Error{"lease " + t->describe() + " holds " + std::to_string(t->lease_bytes()) + " bytes, the region " +
                   std::to_string(r_.cfg.bytes)};
    if (auto s = backing.register_memory(*t); !s) return s;
  }
  const auto& mirror = r_.cfg.mirror;
  if (mirror && mirror->bytes() < r_.cfg.mirror_offset + r_.cfg.bytes)
    if (auto s = mirror->resize(r_.cfg.mirror_offset + r_.cfg.bytes); !s) return s;
  faults_.start();
  wb_.start();
  return ok();
}

// Copies [from, from+len) of the lease from the mirror to the new donor, two
// chunks in flight.
Status Region::copy_from_mirror(LeaseConnection& to, CopyBuffers& buf, std::uint64_t from, std::uint64_t len) {
  Ticket prev = 0;
  int i = 0;
  for (std::uint64_t at = from; at < from + len; at += copy_chunk, i ^= 1) {
    if (r_.halting) return Error{"region detached"};  // a large lease copies for long: stop between chunks
    std::uint64_t n = std::min(copy_chunk, from + len - at);
    // buf[i] was last sent two chunks ago, and that send was waited for.
    if (auto s = r_.cfg.mirror->read(r_.cfg.mirror_offset + at, buf[i].data(), n); !s) return s;
    auto t = to.post_write(at, buf[i].data(), n);
    if (!t) return t.error();
    if (prev) {
      if (auto s = to.wait(prev); !s) return s;
    }
    prev = *t;
  }
  return prev ? to.wait(prev) : ok();
}

Status Region::fail_rehome(const Error& e) {
  std::lock_guard<std::mutex> lock(r_.mu);
  r_.rehoming = false;
  wb_.resume();
  return Error{"rehome: " + e.message};
}

Status Region::rehome(DonorLink link) {
  {
    std::lock_guard<std::mutex> lock(r_.mu);
    if (r_.state != RegionState::degraded)
      return Error{std::string("rehome: the region is ") + region_state_name(r_.state) +
                   "; only a region whose donor failed moves"};
    if (!r_.mirror_usable()) return Error{"rehome: no usable mirror to copy from"};
    if (!link.fetch || !link.writeback) return Error{"rehome: needs a fetch and a write-back connection"};
    r_.rehoming = true;
    r_.rehome_log.clear();
  }
  for (auto* t : {link.fetch.get(), link.writeback.get()}) {
    if (t->lease_bytes() < r_.cfg.bytes) return Error{"rehome: the new lease is smaller than the region"};
    if (auto s = r_.backing->accepts(*t); !s) return Error{"rehome: " + s.error().message};
    if (auto s = r_.backing->register_memory(*t); !s) return s;
  }
  CopyBuffers buf = {std::vector<std::uint8_t>(copy_chunk), std::vector<std::uint8_t>(copy_chunk)};
  for (auto& v : buf)
    if (auto s = link.fetch->register_memory(v.data(), v.size()); !s) return fail_rehome(s.error());
  auto ranges = r_.cfg.mirror->data_ranges(r_.cfg.mirror_offset, r_.cfg.bytes);
  if (!ranges) return fail_rehome(ranges.error());
  for (auto [at, len] : *ranges)
    if (auto s = copy_from_mirror(*link.fetch, buf, at - r_.cfg.mirror_offset, len); !s)
      return fail_rehome(s.error());
  // What write-backs put in the mirror during the copy goes again, with the
  // write-back thread held so that nothing more slips in before the switch.
  std::set<std::uint64_t> again;
  // Each wait below ends by a deadline: the steps it waits for are each
  // bounded by the I/O timeout, so a longer wait is a bug, reported as a
  // failed re-home rather than a hang.
  const auto deadline = Clock::now() + r_.hand_over_limit();
  {
    std::unique_lock<std::mutex> lock(r_.mu);
    wb_.hold();
    // The mirror writer's queue too: a block it writes after the copy below
    // would reach neither copy nor the new donor.
    while (wb_.copying() && !r_.stop && Clock::now() < deadline) r_.cv.wait_for(lock, std::chrono::milliseconds(100));
    if (wb_.copying()) {
      lock.unlock();
      return fail_rehome(Error{r_.stop ? "region detached" : "write-backs still under way after the deadline"});
    }
    again.swap(r_.rehome_log);
  }
  for (std::uint64_t b : again)
    if (auto s = copy_from_mirror(*link.fetch, buf, r_.space.offset(b), r_.space.length(b)); !s)
      return fail_rehome(s.error());
  {
    std::unique_lock<std::mutex> lock(r_.mu);
    if (r_.stop) {
      lock.unlock();
      return fail_rehome(Error{"region detached"});
    }
    if (r_.state != RegionState::degraded || r_.mirror_broken) {
      // The mirror failed under the copy: the new donor is not a copy.
      std::string why = std::string("the region became ") + region_state_name(r_.state) +
                        (r_.error.empty() ? "" : " (" + r_.error + ")");
      lock.unlock();
      return fail_rehome(Error{why});
    }
    r_.pending.fetch = std::move(link.fetch);
    r_.pending.writeback = std::move(link.writeback);
    r_.signal_fault_thread();
    r_.cv.notify_all();  // the fault thread may be waiting for a slot
    while (r_.pending.fetch && !r_.stop && Clock::now() < deadline) r_.cv.wait_for(lock, std::chrono::milliseconds(100));
    if (r_.pending.fetch) {
      // Not taken: take it back, so that nothing switches after we said no.
      r_.pending = DonorLink{};
      lock.unlock();
      return fail_rehome(Error{r_.stop ? "region detached" : "the fault thread did not take the new donor in time"});
    }
    r_.wb_cv.notify_all();
  }
  ++r_.counts.rehomes;
  r_.emit(RegionEvent::Kind::rehomed,
          "lease moved to " + (r_.link.fetch ? r_.link.fetch->describe() : std::string("?")));
  return ok();
}

}  // namespace
}  // namespace region_detail

Expected<std::unique_ptr<RemoteRegion>> RemoteRegion::create(const RegionConfig& config, DonorLink link) {
  if (config.bytes == 0) return Error{"region of 0 bytes"};
  auto r = std::make_unique<region_detail::Region>(config, std::move(link));
  if (auto s = r->init_owned(); !s) return s.error();
  return std::unique_ptr<RemoteRegion>(std::move(r));
}

Expected<std::unique_ptr<RemoteRegion>> RemoteRegion::adopt(const RegionConfig& config, HandedRegion handed,
                                                            DonorLink link) {
  if (config.bytes == 0) return Error{"region of 0 bytes"};
  auto r = std::make_unique<region_detail::Region>(config, std::move(link));
  if (auto s = r->init_adopted(std::move(handed)); !s) return s.error();
  return std::unique_ptr<RemoteRegion>(std::move(r));
}

}  // namespace memlend::rdma
