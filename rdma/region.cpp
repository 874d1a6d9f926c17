#include "rdma/region.hpp"

#include <linux/userfaultfd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <mutex>
#include <poll.h>
#include <pthread.h>
#include <set>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>
#include <vector>

// Newer than the kernel headers Debian 12 ships (6.1); the running kernel
// says whether it has them, and the region does without where it does not.
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
struct uffdio_poison {
  struct uffdio_range range;
  __u64 mode;
  __s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, 0x08, struct uffdio_poison)
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

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

namespace {

std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

// A userfaultfd: /dev/userfaultfd first, since it handles faults taken in the
// kernel too (a VMM's read() into guest memory), then the system call.
Expected<UniqueFd> new_userfaultfd() {
  UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  if (dev) {
    int fd = ::ioctl(dev.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) return UniqueFd(fd);
  }
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0)
    return sys_error("userfaultfd (needs /dev/userfaultfd access, or vm.unprivileged_userfaultfd=1, or CAP_SYS_PTRACE)", errno);
  return UniqueFd(fd);
}

// What this kernel's userfaultfd can do, found once per process on a scratch
// page: a handshake asking for nothing reports every feature, and a
// write-protected UFFDIO_CONTINUE (6.5+) either works or is refused.
struct KernelSupport {
  std::uint64_t features = 0;
  bool continue_wp = false;
  std::string error;
  std::string anonymous_error;  // why the anonymous backing cannot be had; empty if it can
};

// Write-protected UFFDIO_COPY into anonymous memory (Linux 5.7+), tried on a
// scratch page: the anonymous backing's install step.
std::string probe_anonymous() {
  auto fd = new_userfaultfd();
  if (!fd) return fd.error().message;
  uffdio_api api{UFFD_API, UFFD_FEATURE_PAGEFAULT_FLAG_WP, 0};
  if (::ioctl(fd->get(), UFFDIO_API, &api) != 0)
    return "this kernel's userfaultfd lacks write-protect faults on anonymous memory (Linux 5.7+)";
  long page = ::sysconf(_SC_PAGESIZE);
  void* dst = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* src = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  std::string why = "could not map a scratch page";
  if (dst != MAP_FAILED && src != MAP_FAILED) {
    uffdio_register reg{{reinterpret_cast<std::uintptr_t>(dst), static_cast<std::uint64_t>(page)},
                        UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP, 0};
    uffdio_copy c{reinterpret_cast<std::uintptr_t>(dst), reinterpret_cast<std::uintptr_t>(src),
                  static_cast<std::uint64_t>(page), UFFDIO_COPY_MODE_WP, 0};
    if (::ioctl(fd->get(), UFFDIO_REGISTER, &reg) != 0)
      why = "this kernel cannot register anonymous memory for write-protect faults";
    else if (::ioctl(fd->get(), UFFDIO_COPY, &c) != 0)
      why = "this kernel refuses a write-protected UFFDIO_COPY";
    else
      why.clear();
  }
  if (dst != MAP_FAILED) ::munmap(dst, page);
  if (src != MAP_FAILED) ::munmap(src, page);
  return why;
}

const KernelSupport& kernel_support() {
  static const KernelSupport support = [] {
    KernelSupport k;
    auto fd = new_userfaultfd();
    if (!fd) {
      k.error = fd.error().message;
      return k;
    }
    uffdio_api api{UFFD_API, 0, 0};
    if (::ioctl(fd->get(), UFFDIO_API, &api) != 0) {
      k.error = "userfaultfd handshake failed";
      return k;
    }
    k.features = api.features;
    std::uint64_t need = UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_MISSING_SHMEM;
    if ((k.features & need) != need) {
      k.error = "this kernel's userfaultfd lacks minor or write-protect faults on shared memory (Linux 5.19+)";
      return k;
    }
    auto probe = new_userfaultfd();
    if (!probe) return k;
    uffdio_api api2{UFFD_API, need, 0};
    long page = ::sysconf(_SC_PAGESIZE);
    UniqueFd mfd(::memfd_create("memlend-probe", MFD_CLOEXEC));
    if (::ioctl(probe->get(), UFFDIO_API, &api2) != 0 || !mfd || ::ftruncate(mfd.get(), page) != 0) return k;
    void* view = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED, mfd.get(), 0);
    void* alias = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED, mfd.get(), 0);
    if (view != MAP_FAILED && alias != MAP_FAILED) {
      uffdio_register reg{{reinterpret_cast<std::uintptr_t>(view), static_cast<std::uint64_t>(page)},
                          UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP, 0};
      if (::ioctl(probe->get(), UFFDIO_REGISTER, &reg) == 0) {
        static_cast<char*>(alias)[0] = 1;
        uffdio_continue c{{reinterpret_cast<std::uintptr_t>(view), static_cast<std::uint64_t>(page)},
                          UFFDIO_CONTINUE_MODE_WP, 0};
        k.continue_wp = ::ioctl(probe->get(), UFFDIO_CONTINUE, &c) == 0;
      }
    }
    if (view != MAP_FAILED) ::munmap(view, page);
    if (alias != MAP_FAILED) ::munmap(alias, page);
    k.anonymous_error = probe_anonymous();
    return k;
  }();
  return support;
}

// Said once per process, not once per region: it is a property of the kernel.
void log_no_anonymous(const RegionConfig& cfg, const std::string& why) {
  static std::once_flag once;
  if (!cfg.log) return;
  std::call_once(once, [&] {
    cfg.log("remote regions use the memfd backing (slower sequential streams): " + why);
  });
}

enum class BlockState : std::uint8_t {
  absent,    // not in the buffer: the donor (or mirror) has it
  fetching,  // a read is on its way into the buffer
  resident,  // in the buffer (mapped, unless a read-ahead marker)
  writing,   // write-protected while it is written back (flush or eviction)
  lost,      // unreachable (no donor, no mirror): poisoned
};

struct Block {
  BlockState state = BlockState::absent;
  bool dirty = false;
  bool mapped = false;
  bool marker = false;  // read-ahead marker: left unmapped, its fault extends the stream
  bool queued = false;  // in the write-back queue
  bool zero = false;    // the donor holds only zeros for it (never written back)
  // Its write-back: write-protected for it (it was mapped); the copies
  // (donor, mirror) still being made, and which of them took it.
  bool fenced = false;
  std::uint8_t saves = 0;
  bool donor_saved = false;
  bool mirror_saved = false;
  std::uint64_t arrival = 0;  // when it last came into the buffer, for the FIFO
  // Anonymous backing: the staging slot holding its bytes until they are
  // installed; none once installed, or for a zero block.
  std::uint32_t slot = no_slot;
  static constexpr std::uint32_t no_slot = ~0u;
};

struct Work {
  enum class Kind { evict, clean, flush_marker } kind;
  std::uint64_t block = 0;
  std::uint64_t generation = 0;
};

class Region final : public RemoteRegion {
 public:
  Region(const RegionConfig& config, DonorLink link) : cfg_(config), link_(std::move(link)) {}

  ~Region() override { (void)detach(); }

  // Own memory: anonymous where it can be, else a memfd mapped twice, one
  // view faulting, one not.
  Status init_owned() {
    page_ = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    mapped_ = round_up(cfg_.bytes, page_);
    std::string why = anonymous_unavailable();
    if (why.empty()) return init_anonymous();
    if (cfg_.backing == RegionBacking::anonymous) return Error{"anonymous backing: " + why};
    memfd_ = UniqueFd(::memfd_create("memlend-region", MFD_CLOEXEC));
    if (!memfd_) return sys_error("region memfd", errno);
    if (::ftruncate(memfd_.get(), static_cast<off_t>(mapped_)) != 0) return sys_error("region memfd size", errno);
    void* view = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_.get(), 0);
    if (view == MAP_FAILED) return sys_error("region mapping", errno);
    view_ = static_cast<std::uint8_t*>(view);
    base_ = reinterpret_cast<std::uintptr_t>(view);
    auto fd = new_userfaultfd();
    if (!fd) return fd.error();
    uffd_ = std::move(*fd);
    return init_common();
  }

  // Why this region cannot have the anonymous backing; empty if it can.
  std::string anonymous_unavailable() {
    if (cfg_.backing == RegionBacking::memfd) return "memfd asked for";
    const auto& k = kernel_support();
    if (!k.error.empty()) return k.error;
    if (!k.anonymous_error.empty()) {
      log_no_anonymous(cfg_, k.anonymous_error);
      return k.anonymous_error;
    }
    for (auto* t : {link_.fetch.get(), link_.writeback.get()})
      // Verbs would have to register (and pin) the faulting range itself
      // for write-backs.
      if (t && t->kind() != TransportKind::tcp) return "needs the tcp transport";
    if (buffer_blocks() < min_anonymous_blocks)
      return "a buffer of fewer than " + std::to_string(min_anonymous_blocks) + " blocks";
    // Then each block is allocated once and never freed: nothing to save,
    // and staging would make some of it evicted.
    if ((cfg_.bytes + block_bytes() - 1) / block_bytes() <= buffer_blocks())
      return "the whole region fits the buffer";
    return "";
  }

  Status init_anonymous() {
    anon_ = true;
    // NORESERVE: the buffer bounds what is resident, not the lease's size.
    void* view = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (view == MAP_FAILED) return sys_error("region mapping", errno);
    view_ = static_cast<std::uint8_t*>(view);
    base_ = reinterpret_cast<std::uintptr_t>(view);
    // Pages are installed 4 KiB at a time and dropped a block at a time; a
    // forked child could not be served, and would make the pages shared.
    ::madvise(view_, mapped_, MADV_NOHUGEPAGE);
    ::madvise(view_, mapped_, MADV_DONTFORK);
    auto fd = new_userfaultfd();
    if (!fd) return fd.error();
    uffd_ = std::move(*fd);
    return init_common();
  }

  std::uint64_t block_bytes() const {
    return std::min(round_up(std::max<std::uint64_t>(cfg_.block_bytes, 1), page_), mapped_);
  }
  std::uint64_t buffer_blocks() const { return std::max<std::uint64_t>(1, cfg_.buffer_bytes / block_bytes()); }

  Status init_adopted(HandedRegion handed) {
    page_ = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    if (handed.region.bytes != round_up(cfg_.bytes, page_))
      return Error{"handed region is " + std::to_string(handed.region.bytes) + " bytes, the lease " +
                   std::to_string(cfg_.bytes)};
    mapped_ = handed.region.bytes;
    base_ = handed.region.base;
    memfd_offset_ = handed.region.memfd_offset;
    memfd_ = std::move(handed.memfd);
    uffd_ = std::move(handed.uffd);
    peer_ = std::move(handed.peer);
    // The contents are the lease's; whatever the memfd held is dropped, so
    // that the first touch of every page comes to us.
    ::fallocate(memfd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(memfd_offset_),
                static_cast<off_t>(mapped_));
    int flags = ::fcntl(uffd_.get(), F_GETFL);
    ::fcntl(uffd_.get(), F_SETFL, flags | O_NONBLOCK);
    return init_common();
  }

  void* data() const override { return view_; }
  std::uint64_t size() const override { return cfg_.bytes; }

  Status flush() override { return run_marker(false); }

  Status evict_all() override {
    // The marker evicts what was resident and idle when it was queued; a block
    // then busy (its write-back or mirror write in flight, or a read-ahead
    // fetch landing) stays. Each round is bounded, and once the faults that
    // feed read-ahead have stopped, a round or two leaves nothing resident.
    for (int round = 0; round < 16; ++round) {
      if (auto s = run_marker(true); !s) return s;
      std::lock_guard<std::mutex> lock(mu_);
      if (resident_ == 0) break;
    }
    return ok();
  }

  void fail_over(const std::string& reason) override { donor_lost(reason); }

  Status rehome(DonorLink link) override;

  Status detach() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (detached_) return ok();
      detached_ = true;
      stop_ = true;
      halting_ = true;
      if (state_ != RegionState::failed) state_ = RegionState::detached;
      if (link_.fetch) link_.fetch->interrupt();
      if (link_.writeback) link_.writeback->interrupt();
    }
    cv_.notify_all();
    wb_cv_.notify_all();
    signal_fault_thread();
    if (fault_thread_.joinable()) fault_thread_.join();
    if (wb_thread_.joinable()) wb_thread_.join();
    mirror_cv_.notify_all();
    if (mirror_thread_.joinable()) mirror_thread_.join();
    if (uffd_ && registered_) {
      // Wakes anything still blocked on a fault in the range.
      uffdio_range r{base_, mapped_};
      ::ioctl(uffd_.get(), UFFDIO_UNREGISTER, &r);
    }
    if (view_) ::munmap(view_, mapped_);
    if (alias_) ::munmap(alias_, mapped_);
    if (staging_) ::munmap(staging_, slots_ * block_);
    if (zeros_) ::munmap(zeros_, block_);
    view_ = alias_ = staging_ = zeros_ = nullptr;
    uffd_.reset();
    memfd_.reset();
    return ok();
  }

  RegionState state() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return state_;
  }

  RegionStats stats() const override {
    RegionStats s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      s.state = state_;
      s.error = error_;
      s.resident_bytes = resident_ * block_;
      s.mirror_failed = mirror_broken_;
      s.mirror_error = mirror_error_;
    }
    s.faults = faults_;
    s.write_faults = write_faults_;
    s.fetches = fetches_;
    s.prefetches = prefetches_;
    s.evictions = evictions_;
    s.clean_evictions = clean_evictions_;
    s.bytes_read = bytes_read_;
    s.bytes_written = bytes_written_;
    s.mirror_bytes_read = mirror_bytes_read_;
    s.mirror_bytes_written = mirror_bytes_written_;
    s.failovers = failovers_;
    s.rehomes = rehomes_;
    s.buffer_bytes = (capacity_ + slots_) * block_;
    s.block_bytes = block_;
    s.dirty_tracking = wp_installs_;
    s.backing = anon_ ? RegionBacking::anonymous : RegionBacking::memfd;
    s.fault_latency = latency_.snapshot();
    return s;
  }

 private:
  Status init_common();
  Status map_staging();
  void fault_loop();
  void writeback_loop();
  void handle_fault(const uffd_msg& msg);
  void handle_read_fault(std::uint64_t b, std::uint64_t addr, std::unique_lock<std::mutex>& lock);
  void handle_write_fault(std::uint64_t b, std::uint64_t addr, std::unique_lock<std::mutex>& lock);
  bool claim_slot(std::unique_lock<std::mutex>& lock, bool wait);
  void queue_eviction_ahead();
  void start_fetch(std::uint64_t b, std::unique_lock<std::mutex>& lock);
  void complete_until(std::uint64_t b, std::unique_lock<std::mutex>& lock);
  void complete_oldest(std::unique_lock<std::mutex>& lock);
  void refetch_inflight_from_mirror(std::unique_lock<std::mutex>& lock);
  void arrived(std::uint64_t b, std::unique_lock<std::mutex>& lock);
  void read_ahead(std::uint64_t b, std::unique_lock<std::mutex>& lock);
  bool map_block(std::uint64_t b, bool write_protect);
  void lose_block(std::uint64_t b);
  bool write_back(const Work& w);
  bool saved_once(std::uint64_t b, bool evict, std::unique_lock<std::mutex>& lock);
  void finish_write_back(std::uint64_t b, bool evict, std::unique_lock<std::mutex>& lock);
  void drop(std::uint64_t b, std::unique_lock<std::mutex>& lock);
  void mirror_loop();
  bool mirror_usable() const { return cfg_.mirror && !mirror_broken_; }
  Status run_marker(bool evict);
  void donor_lost(const std::string& reason);
  void emit(RegionEvent::Kind k, const std::string& detail);
  void install_pending(std::unique_lock<std::mutex>& lock);
  void signal_fault_thread() {
    std::uint64_t one = 1;
    if (wake_) (void)!::write(wake_.get(), &one, sizeof one);
  }

  std::uint64_t block_offset(std::uint64_t b) const { return b * block_; }
  // The lease bytes of block b (the last one may be short).
  std::uint64_t block_length(std::uint64_t b) const { return std::min(block_, cfg_.bytes - block_offset(b)); }
  // The pages of block b, for userfaultfd ranges.
  std::uint64_t block_span(std::uint64_t b) const { return round_up(block_length(b), page_); }
  std::uint8_t* alias_of(std::uint64_t b) const { return alias_ + block_offset(b); }
  // Where block b sits in the faulting view (anonymous backing).
  std::uint8_t* view_of(std::uint64_t b) const { return reinterpret_cast<std::uint8_t*>(base_) + block_offset(b); }
  // Where a fetch of block b lands.
  std::uint8_t* landing(std::uint64_t b) const {
    return anon_ ? staging_ + std::uint64_t{blocks_[b].slot} * block_ : alias_of(b);
  }
  // What a write-back of block b sends. Anonymous: the view itself, which
  // is write-protected meanwhile; a block never installed is in its slot,
  // or all zeros.
  const std::uint8_t* contents(std::uint64_t b) const {
    if (!anon_) return alias_of(b);
    if (blocks_[b].slot != Block::no_slot) return landing(b);
    return blocks_[b].mapped ? view_of(b) : zeros_;
  }
  bool take_slot(std::uint64_t b, std::unique_lock<std::mutex>& lock, bool wait, std::uint32_t& slot);
  bool install_block(std::uint64_t b, bool write_protect);
  void release_slot(std::uint64_t b) {
    if (!anon_ || blocks_[b].slot == Block::no_slot) return;
    free_slots_.push_back(blocks_[b].slot);
    blocks_[b].slot = Block::no_slot;
  }
  void wake(std::uint64_t start, std::uint64_t len) {
    uffdio_range r{base_ + start, len};
    ::ioctl(uffd_.get(), UFFDIO_WAKE, &r);
  }
  // Setting protection never wakes (the kernel refuses DONTWAKE with WP);
  // clearing it wakes the writers that waited.
  bool write_protect(std::uint64_t b, bool on) {
    uffdio_writeprotect w{{base_ + block_offset(b), block_span(b)}, on ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
    return ::ioctl(uffd_.get(), UFFDIO_WRITEPROTECT, &w) == 0;
  }
  // Drops block b's pages: unmapped, and their memory freed.
  void punch(std::uint64_t b) {
    if (anon_) {
      ::madvise(view_of(b), block_span(b), MADV_DONTNEED);
      return;
    }
    ::fallocate(memfd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                static_cast<off_t>(memfd_offset_ + block_offset(b)), static_cast<off_t>(block_span(b)));
  }

  // How long a re-home may wait for the region's own threads: a few I/O
  // timeouts, each of their steps being bounded by one.
  Millis hand_over_limit() const { return std::max(Millis(1000), cfg_.timeouts.io * 4); }

  // Below this many blocks of buffer, staging would take too large a share.
  static constexpr std::uint64_t min_anonymous_blocks = 4;

  RegionConfig cfg_;
  DonorLink link_;
  DonorLink pending_;  // handed over by rehome(), installed by the owning threads
  std::uint64_t page_ = 4096;
  std::uint64_t block_ = 0;
  std::uint64_t mapped_ = 0;
  std::uint64_t capacity_ = 1;  // blocks the buffer holds
  std::uint64_t reserve_ = 0;   // free slots eviction keeps ahead of need
  unsigned depth_ = 0;          // read-ahead blocks
  std::uintptr_t base_ = 0;     // the region in the faulting address space
  std::uint64_t memfd_offset_ = 0;
  std::uint8_t* view_ = nullptr;
  std::uint8_t* alias_ = nullptr;
  UniqueFd memfd_, uffd_, peer_, wake_;
  bool registered_ = false;
  bool wp_installs_ = false;        // blocks are mapped write-protected, so first writes are seen
  bool can_poison_ = false;
  bool anon_ = false;               // the anonymous backing
  std::uint8_t* staging_ = nullptr; // anonymous: slots_ blocks, reused, never freed
  std::uint8_t* zeros_ = nullptr;   // anonymous: a block of zeros to install fresh blocks from
  std::uint64_t slots_ = 0;
  std::vector<std::uint32_t> free_slots_;

  mutable std::mutex mu_;
  std::condition_variable cv_;     // slots freed, markers done, hand-overs done
  std::condition_variable wb_cv_;  // write-back work
  std::condition_variable mirror_cv_;  // mirror writer work
  std::vector<Block> blocks_;
  // Blocks in the order they came into the buffer: (block, arrival). Entries
  // of blocks that left since are skipped when met, rather than searched for.
  std::deque<std::pair<std::uint64_t, std::uint64_t>> fifo_;
  std::uint64_t arrivals_ = 0;
  std::uint64_t queued_evictions_ = 0;  // in the queue or being carried out

  std::uint64_t resident_ = 0;      // fetching + resident + writing
  std::deque<Work> work_;
  // Blocks held in the buffer until the mirror has them too: bounded by the
  // buffer, and so is the mirror's lag.
  std::deque<Work> mirror_q_;
  std::deque<std::pair<Ticket, std::uint64_t>> inflight_;  // fault thread only
  RegionState state_ = RegionState::remote;
  std::string error_;
  bool stop_ = false;
  bool detached_ = false;
  bool wb_busy_ = false;
  bool mirror_busy_ = false;
  bool wb_paused_ = false;
  bool rehoming_ = false;
  bool mirror_broken_ = false;
  std::string mirror_error_;
  std::set<std::uint64_t> rehome_log_;
  std::uint64_t marker_requested_ = 0, marker_done_ = 0;
  Status marker_result_ = ok();

  std::atomic<bool> halting_{false};  // stop_, for the re-home's copy, which runs without the lock
  std::atomic<std::uint64_t> faults_{0}, write_faults_{0}, fetches_{0}, prefetches_{0}, evictions_{0},
      clean_evictions_{0}, bytes_read_{0}, bytes_written_{0}, mirror_bytes_read_{0}, mirror_bytes_written_{0},
      failovers_{0}, rehomes_{0};
  LatencyHistogram latency_;
  std::thread fault_thread_, wb_thread_, mirror_thread_;
};

Status Region::init_common() {
  const auto& k = kernel_support();
  if (!k.error.empty()) return Error{k.error};
  // Anonymous: installs are write-protected copies, always.
  wp_installs_ = anon_ || k.continue_wp;
  can_poison_ = (k.features & UFFD_FEATURE_POISON) != 0;
  std::uint64_t want = UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_MISSING_SHMEM |
                       (anon_ ? UFFD_FEATURE_PAGEFAULT_FLAG_WP : 0) | (can_poison_ ? UFFD_FEATURE_POISON : 0);
  uffdio_api api{UFFD_API, want, 0};
  if (::ioctl(uffd_.get(), UFFDIO_API, &api) != 0)
    return sys_error("userfaultfd handshake (a handed-over descriptor must be fresh)", errno);
  uffdio_register reg{{base_, mapped_},
                      UFFDIO_REGISTER_MODE_MISSING | (anon_ ? 0 : UFFDIO_REGISTER_MODE_MINOR) | UFFDIO_REGISTER_MODE_WP,
                      0};
  if (::ioctl(uffd_.get(), UFFDIO_REGISTER, &reg) != 0)
    return sys_error("userfaultfd register (the range must be a shared memfd mapping)", errno);
  registered_ = true;
  if (!anon_) {
    void* alias = ::mmap(nullptr, mapped_, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_.get(),
                         static_cast<off_t>(memfd_offset_));
    if (alias == MAP_FAILED) return sys_error("region buffer mapping", errno);
    alias_ = static_cast<std::uint8_t*>(alias);
  }
  wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));

  block_ = block_bytes();
  std::uint64_t nblocks = (cfg_.bytes + block_ - 1) / block_;
  std::uint64_t total = buffer_blocks();
  if (anon_) {
    // Staging is part of the buffer: a slot for each read in flight, the
    // fault's and the read-ahead's.
    depth_ = static_cast<unsigned>(std::min<std::uint64_t>(cfg_.prefetch_blocks, total / 4));
    slots_ = depth_ + 1;
    capacity_ = total - slots_;
    if (auto s = map_staging(); !s) return s;
  } else {
    capacity_ = total;
    // Read-ahead beyond half the buffer would evict what the stream just read.
    depth_ = static_cast<unsigned>(std::min<std::uint64_t>(cfg_.prefetch_blocks, capacity_ / 2));
  }
  // Anonymous: its smaller buffer (staging is out of it) would otherwise cut
  // read-ahead short, since read-ahead only takes slots that are free.
  std::uint64_t reserve_share = anon_ ? 2 : 4;
  reserve_ = capacity_ >= 4 ? std::min<std::uint64_t>(capacity_ / reserve_share, depth_ + 1) : 0;
  Block initial;
  initial.zero = cfg_.fresh_lease;
  blocks_.assign(nblocks, initial);
  for (auto* t : {link_.fetch.get(), link_.writeback.get()}) {
    if (!t) return Error{"region needs a fetch and a write-back connection"};
    if (t->lease_bytes() < cfg_.bytes)
      return Error{"lease " + t->describe() + " holds " + std::to_string(t->lease_bytes()) + " bytes, the region " +
                   std::to_string(cfg_.bytes)};
    if (auto s = anon_ ? t->register_memory(staging_, slots_ * block_) : t->register_memory(alias_, mapped_); !s)
      return s;
  }
  if (cfg_.mirror && cfg_.mirror->bytes() < cfg_.mirror_offset + cfg_.bytes)
    if (auto s = cfg_.mirror->resize(cfg_.mirror_offset + cfg_.bytes); !s) return s;
  fault_thread_ = std::thread([this] { fault_loop(); });
  wb_thread_ = std::thread([this] { writeback_loop(); });
  if (cfg_.mirror) mirror_thread_ = std::thread([this] { mirror_loop(); });
  return ok();
}

Status Region::map_staging() {
  // Populated once here, so that receiving into it never allocates a page.
  void* staging = ::mmap(nullptr, slots_ * block_, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (staging == MAP_FAILED) return sys_error("region staging", errno);
  staging_ = static_cast<std::uint8_t*>(staging);
  ::madvise(staging_, slots_ * block_, MADV_DONTFORK);
  // Never written: every page of it is the kernel's one zero page.
  void* zeros = ::mmap(nullptr, block_, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (zeros == MAP_FAILED) return sys_error("region zero block", errno);
  zeros_ = static_cast<std::uint8_t*>(zeros);
  for (std::uint64_t i = slots_; i > 0; --i) free_slots_.push_back(static_cast<std::uint32_t>(i - 1));
  return ok();
}

void Region::emit(RegionEvent::Kind k, const std::string& detail) {
  if (cfg_.on_event) cfg_.on_event(RegionEvent{k, detail});
}

void Region::donor_lost(const std::string& reason) {
  bool to_mirror = false;
  std::string no_mirror = "no mirror: blocks not in the buffer are lost";
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != RegionState::remote) return;
    to_mirror = cfg_.mirror && !mirror_broken_;
    if (cfg_.mirror && mirror_broken_)
      no_mirror = "the mirror could not be written (" + mirror_error_ + "): blocks not in the buffer are lost";
    state_ = to_mirror ? RegionState::degraded : RegionState::failed;
    error_ = reason;
    if (link_.fetch) link_.fetch->interrupt();
    if (link_.writeback) link_.writeback->interrupt();
  }
  ++failovers_;
  emit(RegionEvent::Kind::donor_failed, reason);
  if (to_mirror)
    emit(RegionEvent::Kind::failover_to_mirror, "serving from " + cfg_.mirror->path());
  else
    emit(RegionEvent::Kind::region_failed, no_mirror);
  cv_.notify_all();
  wb_cv_.notify_all();
  signal_fault_thread();
}

// ---- the fault thread --------------------------------------------------------

void Region::fault_loop() {
  ::pthread_setname_np(::pthread_self(), "memlend-fault");
  uffd_msg msgs[32];
  auto last_event = Clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    install_pending(lock);
    lock.unlock();
    ssize_t n = ::read(uffd_.get(), msgs, sizeof msgs);
    lock.lock();
    if (n > 0) {
      for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(uffd_msg)); ++i) {
        if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
        auto t0 = Clock::now();
        std::uint64_t off = msgs[i].arg.pagefault.address - base_;
        if (off >= mapped_) continue;
        std::uint64_t b = off / block_;
        std::uint64_t addr = msgs[i].arg.pagefault.address & ~(page_ - 1);
        if (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
          handle_write_fault(b, addr, lock);
        else
          handle_read_fault(b, addr, lock);
        latency_.record(static_cast<std::uint64_t>(
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
    if (cfg_.spin.count() > 0 && Clock::now() - last_event < cfg_.spin) continue;
    lock.unlock();
    pollfd p[3] = {{uffd_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}, {peer_ ? peer_.get() : -1, POLLIN, 0}};
    int ready = ::poll(p, 3, -1);
    if (ready > 0 && p[1].revents) {
      std::uint64_t v;
      (void)!::read(wake_.get(), &v, sizeof v);
    }
    bool peer_gone = false;
    if (ready > 0 && p[2].revents) {
      char c;
      peer_gone = ::recv(peer_.get(), &c, 1, MSG_DONTWAIT) <= 0;
    }
    lock.lock();
    if (peer_gone) {
      // The process that handed its memory over is gone, and its address
      // space with it: nothing more to serve.
      state_ = RegionState::detached;
      stop_ = true;
      lock.unlock();
      emit(RegionEvent::Kind::recipient_gone, "the process that handed its memory over exited");
      wb_cv_.notify_all();
      mirror_cv_.notify_all();
      cv_.notify_all();
      return;
    }
  }
}

void Region::install_pending(std::unique_lock<std::mutex>& lock) {
  if (!pending_.fetch) return;
  // In-flight reads belong to the old connection: take them from the mirror.
  refetch_inflight_from_mirror(lock);
  link_.fetch = std::move(pending_.fetch);
  state_ = RegionState::remote;
  error_.clear();
  rehoming_ = false;
  wb_paused_ = false;
  cv_.notify_all();
  wb_cv_.notify_all();
}

void Region::handle_write_fault(std::uint64_t b, std::uint64_t addr, std::unique_lock<std::mutex>& lock) {
  Block& blk = blocks_[b];
  if (blk.state == BlockState::resident && blk.mapped) {
    ++write_faults_;
    blk.dirty = true;
    // Under the lock: a write-back's fence must never be undone by a late
    // clear from here.
    write_protect(b, false);
    return;
  }
  if (blk.state == BlockState::writing) return;  // the write-back wakes it when done
  // Stale (the block left meanwhile): the retry will say what it needs.
  lock.unlock();
  wake(addr - base_, page_);
  lock.lock();
}

void Region::handle_read_fault(std::uint64_t b, std::uint64_t addr, std::unique_lock<std::mutex>& lock) {
  ++faults_;
  bool sequential = b > 0 && blocks_[b - 1].state != BlockState::absent && blocks_[b - 1].state != BlockState::lost;
  for (;;) {
    Block& blk = blocks_[b];
    switch (blk.state) {
      case BlockState::absent:
        if (state_ == RegionState::failed) {
          lose_block(b);
          return;
        }
        if (!claim_slot(lock, true)) {
          // Stopping, or failed while waiting.
          if (state_ == RegionState::failed) lose_block(b);
          return;
        }
        {
          std::uint32_t slot = Block::no_slot;
          bool staged = take_slot(b, lock, true, slot);
          if (!staged || blocks_[b].state != BlockState::absent) {  // both may let go of the lock
            if (slot != Block::no_slot) free_slots_.push_back(slot);
            --resident_;
            if (!staged) return;  // stopping
            continue;
          }
          blocks_[b].slot = slot;
        }
        start_fetch(b, lock);
        ++fetches_;
        if (sequential) read_ahead(b, lock);
        continue;
      case BlockState::fetching:
        complete_until(b, lock);
        if (blocks_[b].state == BlockState::fetching) return;  // stopping
        continue;
      case BlockState::writing:
        // Being written back: the write-back thread wakes the whole block
        // when it is done, and the retry finds it resident or absent.
        return;
      case BlockState::resident:
        if (!blk.mapped) {
          // A read-ahead marker (or a block that arrived unmapped): map it,
          // and the stream goes on.
          bool was_marker = blk.marker;
          blk.marker = false;
          if (map_block(b, !blk.dirty)) blocks_[b].mapped = true;
          if (was_marker) read_ahead(b, lock);
          return;
        }
        if (!anon_) {
          // Mostly a fault that raced with its block's mapping; should the
          // page really have no entry, map that page alone.
          uffdio_continue c{{addr, page_}, !blk.dirty && wp_installs_ ? UFFDIO_CONTINUE_MODE_WP : 0, 0};
          ::ioctl(uffd_.get(), UFFDIO_CONTINUE, &c);
        }
        // Anonymous: installs are whole blocks, so the page is there now.
        wake(addr - base_, page_);
        return;
      case BlockState::lost:
        lose_block(b);
        return;
    }
  }
}

// Anonymous backing: takes a staging slot for block b's fetch (none is
// needed for a zero block). Slots are held by reads in flight, by blocks
// that arrived unmapped, and by such blocks being evicted; without waiting,
// none may be free.
bool Region::take_slot(std::uint64_t b, std::unique_lock<std::mutex>& lock, bool wait, std::uint32_t& slot) {
  slot = Block::no_slot;
  if (!anon_ || blocks_[b].zero) return true;
  while (free_slots_.empty()) {
    if (!wait || stop_) return false;
    install_pending(lock);  // as in claim_slot: the write-back may be held for it
    if (!inflight_.empty()) {
      complete_oldest(lock);
      continue;
    }
    // Every slot holds a block that arrived unmapped: map one, losing only
    // a read-ahead marker.
    bool freed = false;
    for (auto [v, arrival] : fifo_) {
      Block& blk = blocks_[v];
      if (blk.arrival != arrival || blk.state != BlockState::resident || blk.mapped || blk.slot == Block::no_slot)
        continue;
      blk.marker = false;
      blk.mapped = map_block(v, !blk.dirty);
      freed = blk.mapped;
      break;
    }
    // Or one is being evicted: the write-back thread (or the mirror writer)
    // says when it is done.
    if (!freed) cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
  slot = free_slots_.back();
  free_slots_.pop_back();
  return true;
}

// Takes one slot of the buffer for a block about to be read. Evictions run
// in the write-back thread; here we only wait when the buffer is really full.
bool Region::claim_slot(std::unique_lock<std::mutex>& lock, bool wait) {
  for (;;) {
    if (stop_) return false;
    // A re-home holds the write-back thread until this thread takes the new
    // link: waiting here for the slot a write-back would free, without
    // taking it, waited forever.
    if (wait) install_pending(lock);
    if (resident_ < capacity_) {
      ++resident_;
      queue_eviction_ahead();
      return true;
    }
    if (!wait) return false;
    // Read-ahead in flight holds slots the fault needs: land it first.
    queue_eviction_ahead();
    if (queued_evictions_ == 0 && !wb_busy_ && !inflight_.empty()) {
      complete_oldest(lock);
      continue;
    }
    if (state_ == RegionState::failed) {
      // Nothing can be written back any more; only clean blocks can go.
      bool freed = false;
      for (auto [b, arrival] : fifo_) {
        Block& v = blocks_[b];
        if (v.arrival != arrival || v.state != BlockState::resident || v.dirty || v.queued) continue;
        v.queued = true;
        ++queued_evictions_;
        work_.push_back(Work{Work::Kind::evict, b, 0});
        wb_cv_.notify_one();
        freed = true;
        break;
      }
      if (!freed && !wb_busy_ && work_.empty() && !mirror_busy_ && mirror_q_.empty()) return false;
    }
    cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
}

// Keeps slots free by evicting the oldest blocks ahead of need, unless the
// whole region fits the buffer. Evictions go in batches (below half the
// reserve, up to all of it), so the write-back thread wakes once per batch.
void Region::queue_eviction_ahead() {
  if (blocks_.size() <= capacity_) return;
  std::uint64_t low = std::max<std::uint64_t>(1, reserve_ / 2), high = std::max<std::uint64_t>(1, reserve_);
  auto free_soon = [&] { return capacity_ - std::min(resident_, capacity_) + queued_evictions_; };
  if (free_soon() >= low) return;
  bool queued = false;
  while (free_soon() < high && !fifo_.empty()) {
    auto [v, arrival] = fifo_.front();
    Block& blk = blocks_[v];
    if (blk.arrival != arrival || blk.state != BlockState::resident || blk.queued) {
      fifo_.pop_front();
      continue;
    }
    if (state_ == RegionState::failed && blk.dirty) break;  // its only copy: keep it
    fifo_.pop_front();
    blk.queued = true;
    ++queued_evictions_;
    work_.push_back(Work{Work::Kind::evict, v, 0});
    queued = true;
  }
  if (queued) wb_cv_.notify_one();
}

void Region::start_fetch(std::uint64_t b, std::unique_lock<std::mutex>& lock) {
  blocks_[b].state = BlockState::fetching;
  if (blocks_[b].zero) {
    // Nothing to fetch: fresh zeroed pages are what the donor would send
    // (anonymous: installed from the zero block).
    if (!anon_)
      ::fallocate(memfd_.get(), 0, static_cast<off_t>(memfd_offset_ + block_offset(b)),
                  static_cast<off_t>(block_span(b)));
    arrived(b, lock);
    return;
  }
  // The buffer's pages are allocated in one call rather than faulted in one
  // by one while the data arrives (not worth a call for a few pages).
  if (!anon_ && block_span(b) > 4 * page_) ::madvise(alias_of(b), block_span(b), MADV_POPULATE_WRITE);
  if (state_ == RegionState::remote) {
    auto t = link_.fetch->post_read(block_offset(b), landing(b), block_length(b));
    if (t) {
      inflight_.emplace_back(*t, b);
      return;
    }
    lock.unlock();
    donor_lost(t.error().message);
    lock.lock();
  }
  inflight_.emplace_back(0, b);
  refetch_inflight_from_mirror(lock);
}

void Region::read_ahead(std::uint64_t b, std::unique_lock<std::mutex>& lock) {
  if (depth_ == 0) return;
  std::uint64_t last = std::min<std::uint64_t>(b + depth_, blocks_.size() - 1);
  for (std::uint64_t n = b + 1; n <= last; ++n) {
    if (blocks_[n].state != BlockState::absent) continue;
    if (!claim_slot(lock, false)) break;
    std::uint32_t slot = Block::no_slot;
    if (!take_slot(n, lock, false, slot)) {
      --resident_;
      break;
    }
    blocks_[n].slot = slot;
    start_fetch(n, lock);
    ++prefetches_;
  }
  // A block about halfway that is not mapped yet stays unmapped: its fault,
  // a cheap one, says the stream has got there and moves the window on.
  for (std::uint64_t n = b + (depth_ + 1) / 2; n <= last; ++n) {
    Block& blk = blocks_[n];
    if (blk.state == BlockState::fetching || (blk.state == BlockState::resident && !blk.mapped)) {
      blk.marker = true;
      break;
    }
  }
}

void Region::complete_oldest(std::unique_lock<std::mutex>& lock) {
  if (!inflight_.empty()) complete_until(inflight_.front().second, lock);
}

// Completes in-flight reads in order, up to and including block b's.
void Region::complete_until(std::uint64_t b, std::unique_lock<std::mutex>& lock) {
  while (!inflight_.empty()) {
    auto [ticket, block] = inflight_.front();
    if (state_ != RegionState::remote || ticket == 0) {
      refetch_inflight_from_mirror(lock);
      return;
    }
    auto* transport = link_.fetch.get();
    lock.unlock();
    Status s = transport->wait(ticket);
    lock.lock();
    if (!s) {
      lock.unlock();
      donor_lost(s.error().message);
      lock.lock();
      continue;
    }
    inflight_.pop_front();
    bytes_read_ += block_length(block);
    arrived(block, lock);
    if (block == b) return;
  }
}

// The donor is gone: what was on its way comes from the mirror instead, or,
// without one, is lost.
void Region::refetch_inflight_from_mirror(std::unique_lock<std::mutex>& lock) {
  while (!inflight_.empty()) {
    std::uint64_t b = inflight_.front().second;
    inflight_.pop_front();
    bool from_mirror = state_ != RegionState::failed && cfg_.mirror && !mirror_broken_;
    if (!from_mirror) {
      blocks_[b].state = BlockState::absent;
      --resident_;
      lose_block(b);
      continue;
    }
    lock.unlock();
    Status s = cfg_.mirror->read(cfg_.mirror_offset + block_offset(b), landing(b), block_length(b));
    lock.lock();
    if (!s) {
      mirror_broken_ = true;
      mirror_error_ = s.error().message;
      state_ = RegionState::failed;
      error_ = s.error().message;
      blocks_[b].state = BlockState::absent;
      --resident_;
      lose_block(b);
      lock.unlock();
      emit(RegionEvent::Kind::region_failed, s.error().message);
      lock.lock();
      continue;
    }
    mirror_bytes_read_ += block_length(b);
    arrived(b, lock);
  }
}

// A block's bytes are in the buffer: map it (write-protected, so its first
// write is seen), unless it is the read-ahead marker.
void Region::arrived(std::uint64_t b, std::unique_lock<std::mutex>& lock) {
  Block& blk = blocks_[b];
  blk.state = BlockState::resident;
  blk.dirty = !wp_installs_;  // without write-protected mapping, assume written
  blk.arrival = ++arrivals_;
  fifo_.emplace_back(b, blk.arrival);
  if (blk.marker) return;
  blk.mapped = map_block(b, wp_installs_);
}

bool Region::map_block(std::uint64_t b, bool write_protect) {
  if (anon_) return install_block(b, write_protect);
  std::uint64_t start = block_offset(b), len = block_span(b);
  while (len > 0) {
    uffdio_continue c{{base_ + start, len}, write_protect && wp_installs_ ? UFFDIO_CONTINUE_MODE_WP : 0, 0};
    if (::ioctl(uffd_.get(), UFFDIO_CONTINUE, &c) == 0) return true;
    if (errno == EAGAIN && c.mapped > 0) {  // interrupted part-way: go on
      start += static_cast<std::uint64_t>(c.mapped);
      len -= static_cast<std::uint64_t>(c.mapped);
      continue;
    }
    if (errno == EEXIST) {
      // Some page is mapped already: step over it a page at a time.
      std::uint64_t done = c.mapped > 0 ? static_cast<std::uint64_t>(c.mapped) : 0;
      start += done + page_;
      len -= std::min(len, done + page_);
      continue;
    }
    return false;
  }
  wake(block_offset(b), block_span(b));
  return true;
}

// Copies block b into the view from its slot (from the zero block if it has
// none) and frees the slot. Write-protected in the same step: a separate
// step after it would leave a window in which a write goes unseen.
bool Region::install_block(std::uint64_t b, bool write_protect) {
  Block& blk = blocks_[b];
  const std::uint8_t* src = zeros_;
  if (blk.slot != Block::no_slot) {
    src = landing(b);
    // The slot's last page may hold another block's bytes past the lease.
    std::memset(landing(b) + block_length(b), 0, block_span(b) - block_length(b));
  }
  std::uint64_t done = 0, len = block_span(b);
  bool stepped = false;
  while (done < len) {
    uffdio_copy c{base_ + block_offset(b) + done, reinterpret_cast<std::uintptr_t>(src) + done, len - done,
                  write_protect ? UFFDIO_COPY_MODE_WP : 0, 0};
    if (::ioctl(uffd_.get(), UFFDIO_COPY, &c) == 0) break;
    if (errno == EAGAIN && c.copy > 0) {  // interrupted part-way: go on
      done += static_cast<std::uint64_t>(c.copy);
      continue;
    }
    if (errno == EEXIST) {
      // Some page is there already: step over it a page at a time.
      done += (c.copy > 0 ? static_cast<std::uint64_t>(c.copy) : 0) + page_;
      stepped = true;
      continue;
    }
    return false;
  }
  release_slot(b);
  // A copy wakes the range it filled; the pages stepped over need a wake.
  if (stepped) wake(block_offset(b), block_span(b));
  return true;
}

// A block no one can serve: poison it so that touching it raises SIGBUS (a
// VMM turns that into a memory error for its guest) rather than hanging.
void Region::lose_block(std::uint64_t b) {
  release_slot(b);
  bool again = blocks_[b].state == BlockState::lost;
  blocks_[b].state = BlockState::lost;
  std::uint64_t start = block_offset(b), len = block_span(b);
  if (can_poison_ && !again) {
    // Write-protect markers left by earlier write-backs would make the
    // poison fail (EEXIST) and the fault come back forever: clear them first.
    write_protect(b, false);
    uffdio_poison p{{base_ + start, len}, 0, 0};
    if (::ioctl(uffd_.get(), UFFDIO_POISON, &p) == 0) {
      wake(start, len);
      return;
    }
  }
  // No poison on this kernel (or it did not take): zeros, loudly — the
  // region's state and error say its data is lost.
  if (!anon_) std::memset(alias_of(b), 0, block_length(b));
  map_block(b, false);
}

// ---- the write-back thread ---------------------------------------------------

void Region::writeback_loop() {
  ::pthread_setname_np(::pthread_self(), "memlend-wback");
  std::unique_lock<std::mutex> lock(mu_);
  auto next_clean = Clock::now() + cfg_.clean_interval;
  while (!stop_) {
    if (pending_.writeback && !wb_busy_) link_.writeback = std::move(pending_.writeback);
    if (work_.empty() || wb_paused_) {
      if (cfg_.clean_interval.count() > 0) {
        if (Clock::now() >= next_clean) {
          next_clean = Clock::now() + cfg_.clean_interval;
          for (auto [b, arrival] : fifo_) {
            Block& blk = blocks_[b];
            if (blk.arrival == arrival && blk.state == BlockState::resident && blk.dirty && !blk.queued) {
              blk.queued = true;
              work_.push_back(Work{Work::Kind::clean, b, 0});
            }
          }
          continue;
        }
        wb_cv_.wait_until(lock, next_clean);
      } else {
        wb_cv_.wait(lock);
      }
      continue;
    }
    Work w = work_.front();
    work_.pop_front();
    wb_busy_ = true;
    lock.unlock();
    bool done = write_back(w);
    lock.lock();
    wb_busy_ = false;
    if (done && w.kind == Work::Kind::evict) --queued_evictions_;
    cv_.notify_all();
  }
}

// Called without the lock. Every change to a block's mapping or protection
// happens under the lock, so the fault thread and these threads never undo
// each other's. Dirty blocks are write-protected first so that writers wait,
// then written to the donor here and to the mirror by the mirror writer at
// the same time: the block is held for the slower of the two, not for both
// in turn. Only once both are done is it dropped (evict) or marked clean
// (flush). False: the mirror writer finishes it.
bool Region::write_back(const Work& w) {
  std::unique_lock<std::mutex> lock(mu_);
  if (w.kind == Work::Kind::flush_marker) {
    if (cfg_.mirror) {
      // In the mirror writer's queue order, so that it syncs only after
      // every block before it is in the file.
      mirror_q_.push_back(w);
      mirror_cv_.notify_one();
      return false;
    }
    marker_done_ = std::max(marker_done_, w.generation);
    cv_.notify_all();
    return true;
  }
  Block& blk = blocks_[w.block];
  blk.queued = false;
  bool evict = w.kind == Work::Kind::evict;
  if (blk.state != BlockState::resident) return true;
  std::uint64_t b = w.block;
  if (blk.dirty) {
    if (state_ == RegionState::failed) return true;  // its only copy
    blk.state = BlockState::writing;
    blk.fenced = blk.mapped;
    bool remote = state_ == RegionState::remote;
    bool mirror = mirror_usable();
    auto* transport = link_.writeback.get();
    const std::uint8_t* src = contents(b);
    // The fence: from here writers wait until the block is saved. Without
    // it a copy could miss a write, so no fence, no write-back.
    if (blk.fenced && !write_protect(b, true)) {
      blk.state = BlockState::resident;
      if (error_.empty()) error_ = std::string("write-protecting a block failed: ") + std::strerror(errno);
      return true;
    }
    blk.saves = static_cast<std::uint8_t>(int{remote} + int{mirror});
    blk.donor_saved = blk.mirror_saved = false;
    if (blk.saves == 0) {
      finish_write_back(b, evict, lock);
      return true;
    }
    if (mirror) {
      mirror_q_.push_back(w);
      mirror_cv_.notify_one();
    }
    if (!remote) return false;
    lock.unlock();
    std::uint64_t len = block_length(b);
    Expected<Ticket> ticket = transport->post_write(block_offset(b), src, len);
    Status d = ticket ? transport->wait(*ticket) : Status(ticket.error());
    if (!d) donor_lost(d.error().message);
    lock.lock();
    if (d) bytes_written_ += len;
    blocks_[b].donor_saved = bool(d);
    return saved_once(b, evict, lock);
  }
  if (!evict) return true;
  ++clean_evictions_;
  blk.state = BlockState::writing;
  drop(b, lock);
  return true;
}

// One of a dirty block's copies (donor, mirror) is done; the second to be
// done finishes the write-back. True if this call did.
bool Region::saved_once(std::uint64_t b, bool evict, std::unique_lock<std::mutex>& lock) {
  if (--blocks_[b].saves > 0) return false;
  finish_write_back(b, evict, lock);
  return true;
}

// A dirty block's write-back is over: saved by the donor, the mirror, both
// or neither. With the lock; gives it up while unmapping and waking.
void Region::finish_write_back(std::uint64_t b, bool evict, std::unique_lock<std::mutex>& lock) {
  Block& blk = blocks_[b];
  bool donor_saved = blk.donor_saved, mirror_saved = blk.mirror_saved;
  if (donor_saved || mirror_saved) blk.zero = false;
  if (!evict || (!donor_saved && !mirror_saved)) {
    // It stays. Eviction may have passed over its entry in the FIFO while it
    // was being written (and the mirror queue makes that wait long): a new
    // entry, or it would never be evicted again.
    blk.arrival = ++arrivals_;
    fifo_.emplace_back(b, blk.arrival);
  }
  if (!donor_saved && !mirror_saved) {
    // Neither donor nor mirror took it: the block stays, as the only copy.
    blk.state = BlockState::resident;
    if (blk.fenced) write_protect(b, false);
    lock.unlock();
    wake(block_offset(b), block_span(b));
    lock.lock();
    return;
  }
  blk.dirty = false;
  if (!evict) {
    // Clean now, and still write-protected: the next write is seen.
    blk.state = BlockState::resident;
    lock.unlock();
    wake(block_offset(b), block_span(b));
    lock.lock();
    return;
  }
  drop(b, lock);
}

// Evicts block b (state writing, its contents saved or clean): unmapped, its
// memory freed, its slot in the buffer given back.
void Region::drop(std::uint64_t b, std::unique_lock<std::mutex>& lock) {
  lock.unlock();
  punch(b);
  ++evictions_;
  lock.lock();
  Block& gone = blocks_[b];
  gone.state = BlockState::absent;
  gone.dirty = false;
  gone.mapped = false;
  gone.marker = false;
  release_slot(b);
  --resident_;
  lock.unlock();
  cv_.notify_all();
  wake(block_offset(b), block_span(b));
  lock.lock();
}

// ---- the mirror writer ---------------------------------------------------------

// Writes the blocks the write-back thread is writing back to the mirror as
// well, in order. A block waits here still held in the buffer, so the mirror
// lags by no more than the buffer, and a block reaches the state (absent) in
// which faults would read it from the mirror only once it is in the mirror.
// On stopping it drains its queue.
void Region::mirror_loop() {
  ::pthread_setname_np(::pthread_self(), "memlend-mirror");
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (mirror_q_.empty()) {
      if (stop_) return;
      mirror_cv_.wait(lock);
      continue;
    }
    Work job = mirror_q_.front();
    mirror_q_.pop_front();
    mirror_busy_ = true;
    bool usable = !mirror_broken_;
    if (job.kind == Work::Kind::flush_marker) {
      lock.unlock();
      Status s = usable ? cfg_.mirror->sync() : ok();
      lock.lock();
      if (!s) marker_result_ = s;
      marker_done_ = std::max(marker_done_, job.generation);
    } else {
      std::uint64_t b = job.block;
      std::uint64_t len = block_length(b);
      const std::uint8_t* src = contents(b);
      lock.unlock();
      Status m = usable ? cfg_.mirror->write(cfg_.mirror_offset + block_offset(b), src, len) : Error{"mirror broken"};
      lock.lock();
      if (usable && m) {
        mirror_bytes_written_ += len;
        if (rehoming_) rehome_log_.insert(b);
      }
      if (usable && !m) {
        // The mirror is no copy any more; the donor still is, if it answered.
        // Said at once: a donor failure from now on loses memory.
        mirror_broken_ = true;
        mirror_error_ = m.error().message;
        if (error_.empty()) error_ = m.error().message;
        lock.unlock();
        emit(RegionEvent::Kind::mirror_failed, mirror_error_);
        lock.lock();
      }
      bool evict = job.kind == Work::Kind::evict;
      blocks_[b].mirror_saved = usable && m;
      if (saved_once(b, evict, lock) && evict) --queued_evictions_;
    }
    mirror_busy_ = false;
    cv_.notify_all();
  }
}

// flush(): every dirty block goes through the write-back queue, then a marker
// whose turn says they are done. evict_all(): the same, evicting everything.
Status Region::run_marker(bool evict) {
  std::unique_lock<std::mutex> lock(mu_);
  if (detached_) return Error{"region is detached"};
  for (auto [b, arrival] : fifo_) {
    Block& blk = blocks_[b];
    if (blk.arrival != arrival || blk.state != BlockState::resident || blk.queued) continue;
    if (!evict && !blk.dirty) continue;
    blk.queued = true;
    if (evict) ++queued_evictions_;
    work_.push_back(Work{evict ? Work::Kind::evict : Work::Kind::clean, b, 0});
  }
  std::uint64_t gen = ++marker_requested_;
  work_.push_back(Work{Work::Kind::flush_marker, 0, gen});
  marker_result_ = ok();
  wb_cv_.notify_one();
  // Every write-back step is bounded by the transport's I/O timeout; the
  // deadline covers a buffer's worth of them, and turns a bug into an error.
  const auto deadline = Clock::now() + hand_over_limit() * std::max<std::uint64_t>(1, capacity_ + slots_);
  while (marker_done_ < gen && !stop_ && Clock::now() < deadline) cv_.wait_for(lock, std::chrono::milliseconds(100));
  if (marker_done_ < gen)
    return Error{stop_ ? "region detached during flush" : "flush: write-backs did not finish by the deadline"};
  if (state_ == RegionState::failed) return Error{"region failed: " + error_};
  if (mirror_broken_ && error_.size()) return Error{"mirror: " + error_};
  return marker_result_;
}

Status Region::rehome(DonorLink link) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ != RegionState::degraded)
      return Error{std::string("rehome: the region is ") + region_state_name(state_) +
                   "; only a region whose donor failed moves"};
    if (!cfg_.mirror || mirror_broken_) return Error{"rehome: no usable mirror to copy from"};
    if (!link.fetch || !link.writeback) return Error{"rehome: needs a fetch and a write-back connection"};
    rehoming_ = true;
    rehome_log_.clear();
  }
  for (auto* t : {link.fetch.get(), link.writeback.get()}) {
    if (t->lease_bytes() < cfg_.bytes) return Error{"rehome: the new lease is smaller than the region"};
    if (anon_ && t->kind() != TransportKind::tcp)
      return Error{"rehome: a region with the anonymous backing moves over tcp only"};
    if (auto s = anon_ ? t->register_memory(staging_, slots_ * block_) : t->register_memory(alias_, mapped_); !s)
      return s;
  }
  auto fail = [&](const Error& e) {
    std::lock_guard<std::mutex> lock(mu_);
    rehoming_ = false;
    wb_paused_ = false;
    wb_cv_.notify_all();
    return Status(Error{"rehome: " + e.message});
  };
  // Copies [from, from+len) of the lease from the mirror to the new donor,
  // two chunks in flight.
  constexpr std::uint64_t chunk = 1 << 20;
  std::vector<std::uint8_t> buf[2] = {std::vector<std::uint8_t>(chunk), std::vector<std::uint8_t>(chunk)};
  for (auto& v : buf)
    if (auto s = link.fetch->register_memory(v.data(), v.size()); !s) return fail(s.error());
  auto copy = [&](std::uint64_t from, std::uint64_t len) -> Status {
    Ticket prev = 0;
    int i = 0;
    for (std::uint64_t at = from; at < from + len; at += chunk, i ^= 1) {
      if (halting_) return Error{"region detached"};  // a large lease copies for long: stop between chunks
      std::uint64_t n = std::min(chunk, from + len - at);
      // buf[i] was last sent two chunks ago, and that send was waited for.
      if (auto s = cfg_.mirror->read(cfg_.mirror_offset + at, buf[i].data(), n); !s) return s;
      auto t = link.fetch->post_write(at, buf[i].data(), n);
      if (!t) return t.error();
      if (prev) {
        if (auto s = link.fetch->wait(prev); !s) return s;
      }
      prev = *t;
    }
    return prev ? link.fetch->wait(prev) : ok();
  };
  auto ranges = cfg_.mirror->data_ranges(cfg_.mirror_offset, cfg_.bytes);
  if (!ranges) return fail(ranges.error());
  for (auto [at, len] : *ranges)
    if (auto s = copy(at - cfg_.mirror_offset, len); !s) return fail(s.error());
  // What write-backs put in the mirror during the copy goes again, with the
  // write-back thread held so that nothing more slips in before the switch.
  std::set<std::uint64_t> again;
  // Each wait below ends by a deadline: the steps it waits for are each
  // bounded by the I/O timeout, so a longer wait is a bug, reported as a
  // failed re-home rather than a hang.
  const auto deadline = Clock::now() + hand_over_limit();
  {
    std::unique_lock<std::mutex> lock(mu_);
    wb_paused_ = true;
    // The mirror writer's queue too: a block it writes after the copy below
    // would reach neither copy nor the new donor.
    while ((wb_busy_ || mirror_busy_ || !mirror_q_.empty()) && !stop_ && Clock::now() < deadline)
      cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (wb_busy_ || mirror_busy_ || !mirror_q_.empty()) {
      lock.unlock();
      return fail(Error{stop_ ? "region detached" : "write-backs still under way after the deadline"});
    }
    again.swap(rehome_log_);
  }
  for (std::uint64_t b : again)
    if (auto s = copy(block_offset(b), block_length(b)); !s) return fail(s.error());
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_) {
      lock.unlock();
      return fail(Error{"region detached"});
    }
    if (state_ != RegionState::degraded || mirror_broken_) {
      // The mirror failed under the copy: the new donor is not a copy.
      std::string why = std::string("the region became ") + region_state_name(state_) +
                        (error_.empty() ? "" : " (" + error_ + ")");
      lock.unlock();
      return fail(Error{why});
    }
    pending_.fetch = std::move(link.fetch);
    pending_.writeback = std::move(link.writeback);
    signal_fault_thread();
    cv_.notify_all();  // the fault thread may be waiting for a slot
    while (pending_.fetch && !stop_ && Clock::now() < deadline) cv_.wait_for(lock, std::chrono::milliseconds(100));
    if (pending_.fetch) {
      // Not taken: take it back, so that nothing switches after we said no.
      pending_ = DonorLink{};
      lock.unlock();
      return fail(Error{stop_ ? "region detached" : "the fault thread did not take the new donor in time"});
    }
    wb_cv_.notify_all();
  }
  ++rehomes_;
  emit(RegionEvent::Kind::rehomed, "lease moved to " + (link_.fetch ? link_.fetch->describe() : std::string("?")));
  return ok();
}

}  // namespace

Expected<std::unique_ptr<RemoteRegion>> RemoteRegion::create(const RegionConfig& config, DonorLink link) {
  if (config.bytes == 0) return Error{"region of 0 bytes"};
  auto r = std::make_unique<Region>(config, std::move(link));
  if (auto s = r->init_owned(); !s) return s.error();
  return std::unique_ptr<RemoteRegion>(std::move(r));
}

Expected<std::unique_ptr<RemoteRegion>> RemoteRegion::adopt(const RegionConfig& config, HandedRegion handed,
                                                            DonorLink link) {
  if (config.bytes == 0) return Error{"region of 0 bytes"};
  auto r = std::make_unique<Region>(config, std::move(link));
  if (auto s = r->init_adopted(std::move(handed)); !s) return s.error();
  return std::unique_ptr<RemoteRegion>(std::move(r));
}

}  // namespace memlend::rdma
