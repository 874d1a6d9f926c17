#include "rdma/region_backing.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

namespace memlend::rdma::region_detail {

namespace {

std::uint64_t reserve_for(std::uint64_t capacity, unsigned depth, std::uint64_t share) {
  return capacity >= 4 ? std::min<std::uint64_t>(capacity / share, depth + 1) : 0;
}

// A shared memfd mapping with minor faults: a fetch lands in the memfd
// through a second mapping (the alias) that nobody faults on, and the block
// is mapped with UFFDIO_CONTINUE.
class MemfdBacking final : public Backing {
 public:
  MemfdBacking(const Space& space, UniqueFd memfd, std::uint64_t memfd_offset, std::uint8_t* view)
      : Backing(space), memfd_(std::move(memfd)), memfd_offset_(memfd_offset), view_(view),
        continue_wp_(kernel_support().continue_wp) {}

  RegionBacking kind() const override { return RegionBacking::memfd; }
  void* view() const override { return view_; }
  std::uint64_t features() const override {
    return UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_MISSING_SHMEM;
  }
  std::uint64_t register_modes() const override {
    return UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP;
  }
  bool write_protects(const KernelSupport& k) const override { return k.continue_wp; }

  Expected<BufferPlan> prepare(std::uint64_t total, unsigned prefetch) override {
    void* alias = ::mmap(nullptr, space_.mapped, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_.get(),
                         static_cast<off_t>(memfd_offset_));
    if (alias == MAP_FAILED) return sys_error("region buffer mapping", errno);
    alias_ = static_cast<std::uint8_t*>(alias);
    BufferPlan plan;
    plan.capacity = total;
    // Read-ahead beyond half the buffer would evict what the stream just read.
    plan.depth = static_cast<unsigned>(std::min<std::uint64_t>(prefetch, plan.capacity / 2));
    plan.reserve = reserve_for(plan.capacity, plan.depth, 4);
    return plan;
  }
  Status register_memory(LeaseConnection& t) override { return t.register_memory(alias_, space_.mapped); }
  Status accepts(const LeaseConnection&) const override { return ok(); }

  std::uint8_t* landing(std::uint64_t b) const override { return alias_ + space_.offset(b); }
  const std::uint8_t* contents(std::uint64_t b, bool) const override { return landing(b); }

  void ready(std::uint64_t b, bool zero) override {
    if (zero) {
      ::fallocate(memfd_.get(), 0, static_cast<off_t>(memfd_offset_ + space_.offset(b)),
                  static_cast<off_t>(space_.span(b)));
      return;
    }
    // The buffer's pages are allocated in one call rather than faulted in
    // one by one while the data arrives (not worth a call for a few pages).
    if (space_.span(b) > 4 * space_.page) ::madvise(landing(b), space_.span(b), MADV_POPULATE_WRITE);
  }

  bool map(std::uint64_t b, bool write_protect) override {
    std::uint64_t start = space_.offset(b), len = space_.span(b);
    while (len > 0) {
      uffdio_continue c{{space_.base + start, len}, write_protect && continue_wp_ ? UFFDIO_CONTINUE_MODE_WP : 0, 0};
      if (::ioctl(space_.uffd.get(), UFFDIO_CONTINUE, &c) == 0) return true;
      if (errno == EAGAIN && c.mapped > 0) {  // interrupted part-way: go on
        start += static_cast<std::uint64_t>(c.mapped);
        len -= static_cast<std::uint64_t>(c.mapped);
        continue;
      }
      if (errno == EEXIST) {
        // Some page is mapped already: step over it a page at a time.
        std::uint64_t done = c.mapped > 0 ? static_cast<std::uint64_t>(c.mapped) : 0;
        start += done + space_.page;
        len -= std::min(len, done + space_.page);
        continue;
      }
      return false;
    }
    space_.wake_block(b);
    return true;
  }

  void map_page(std::uintptr_t addr, bool write_protect) override {
    // Mostly a fault that raced with its block's mapping; should the page
    // really have no entry, map that page alone.
    uffdio_continue c{{addr, space_.page}, write_protect && continue_wp_ ? UFFDIO_CONTINUE_MODE_WP : 0, 0};
    ::ioctl(space_.uffd.get(), UFFDIO_CONTINUE, &c);
  }

  void punch(std::uint64_t b) override {
    ::fallocate(memfd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                static_cast<off_t>(memfd_offset_ + space_.offset(b)), static_cast<off_t>(space_.span(b)));
  }
  void zero_lost(std::uint64_t b) override { std::memset(landing(b), 0, space_.length(b)); }

  void release() override {
    if (view_) ::munmap(view_, space_.mapped);
    if (alias_) ::munmap(alias_, space_.mapped);
    view_ = alias_ = nullptr;
    memfd_.reset();
  }

 private:
  UniqueFd memfd_;
  std::uint64_t memfd_offset_ = 0;
  std::uint8_t* view_ = nullptr;  // null when adopted: the view is the other process's
  std::uint8_t* alias_ = nullptr;
  bool continue_wp_ = false;
};

// Private anonymous memory: a fetch lands in a staging slot, reused and never
// freed, and is installed with a write-protected UFFDIO_COPY; eviction drops
// the pages. Shared memory pays far more per page to allocate and free.
class AnonymousBacking final : public Backing {
 public:
  AnonymousBacking(const Space& space, std::uint8_t* view)
      : Backing(space), view_(view), slot_of_(space.count(), no_slot) {}

  RegionBacking kind() const override { return RegionBacking::anonymous; }
  void* view() const override { return view_; }
  std::uint64_t features() const override {
    return UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_MISSING_SHMEM |
           UFFD_FEATURE_PAGEFAULT_FLAG_WP;
  }
  std::uint64_t register_modes() const override { return UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP; }
  // Installs are write-protected copies, always.
  bool write_protects(const KernelSupport&) const override { return true; }

  Expected<BufferPlan> prepare(std::uint64_t total, unsigned prefetch) override {
    // Staging is part of the buffer: a slot for each read in flight, the
    // fault's and the read-ahead's.
    BufferPlan plan;
    plan.depth = static_cast<unsigned>(std::min<std::uint64_t>(prefetch, total / 4));
    plan.slots = plan.depth + 1;
    plan.capacity = total - plan.slots;
    // Its smaller buffer (staging is out of it) would otherwise cut
    // read-ahead short, since read-ahead only takes slots that are free.
    plan.reserve = reserve_for(plan.capacity, plan.depth, 2);
    slots_ = plan.slots;
    // Populated once here, so that receiving into it never allocates a page.
    void* staging = ::mmap(nullptr, slots_ * space_.block, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (staging == MAP_FAILED) return sys_error("region staging", errno);
    staging_ = static_cast<std::uint8_t*>(staging);
    ::madvise(staging_, slots_ * space_.block, MADV_DONTFORK);
    // Never written: every page of it is the kernel's one zero page.
    void* zeros = ::mmap(nullptr, space_.block, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (zeros == MAP_FAILED) return sys_error("region zero block", errno);
    zeros_ = static_cast<std::uint8_t*>(zeros);
    for (std::uint64_t i = slots_; i > 0; --i) free_slots_.push_back(static_cast<std::uint32_t>(i - 1));
    return plan;
  }
  Status register_memory(LeaseConnection& t) override { return t.register_memory(staging_, slots_ * space_.block); }
  Status accepts(const LeaseConnection& t) const override {
    if (t.kind() != TransportKind::tcp) return Error{"a region with the anonymous backing moves over tcp only"};
    return ok();
  }

  std::uint8_t* landing(std::uint64_t b) const override {
    return staging_ + std::uint64_t{slot_of_[b]} * space_.block;
  }
  // The view itself, which is write-protected meanwhile; a block never
  // installed is in its slot, or all zeros.
  const std::uint8_t* contents(std::uint64_t b, bool in_view) const override {
    if (slot_of_[b] != no_slot) return landing(b);
    return in_view ? view_of(b) : zeros_;
  }
  void ready(std::uint64_t, bool) override {}  // a zero block is installed from the zero block

  // Copies block b into the view from its slot (from the zero block if it
  // has none) and frees the slot. Write-protected in the same step: a
  // separate step after it would leave a window in which a write goes unseen.
  bool map(std::uint64_t b, bool write_protect) override {
    const std::uint8_t* src = zeros_;
    if (slot_of_[b] != no_slot) {
      src = landing(b);
      // The slot's last page may hold another block's bytes past the lease.
      std::memset(landing(b) + space_.length(b), 0, space_.span(b) - space_.length(b));
    }
    std::uint64_t done = 0, len = space_.span(b);
    bool stepped = false;
    while (done < len) {
      uffdio_copy c{space_.base + space_.offset(b) + done, reinterpret_cast<std::uintptr_t>(src) + done,
                    len - done, write_protect ? UFFDIO_COPY_MODE_WP : 0, 0};
      if (::ioctl(space_.uffd.get(), UFFDIO_COPY, &c) == 0) break;
      if (errno == EAGAIN && c.copy > 0) {  // interrupted part-way: go on
        done += static_cast<std::uint64_t>(c.copy);
        continue;
      }
      if (errno == EEXIST) {
        // Some page is there already: step over it a page at a time.
        done += (c.copy > 0 ? static_cast<std::uint64_t>(c.copy) : 0) + space_.page;
        stepped = true;
        continue;
      }
      return false;
    }
    release_slot(b);
    // A copy wakes the range it filled; the pages stepped over need a wake.
    if (stepped) space_.wake_block(b);
    return true;
  }
  // Installs are whole blocks, so the page is there now.
  void map_page(std::uintptr_t, bool) override {}

  void punch(std::uint64_t b) override { ::madvise(view_of(b), space_.span(b), MADV_DONTNEED); }
  void zero_lost(std::uint64_t) override {}

  void release() override {
    if (view_) ::munmap(view_, space_.mapped);
    if (staging_) ::munmap(staging_, slots_ * space_.block);
    if (zeros_) ::munmap(zeros_, space_.block);
    view_ = staging_ = zeros_ = nullptr;
  }

  bool stages(bool zero) const override { return !zero; }
  bool slot_free() const override { return !free_slots_.empty(); }
  void stage(std::uint64_t b) override {
    slot_of_[b] = free_slots_.back();
    free_slots_.pop_back();
  }
  void release_slot(std::uint64_t b) override {
    if (slot_of_[b] == no_slot) return;
    free_slots_.push_back(slot_of_[b]);
    slot_of_[b] = no_slot;
  }
  bool holds_slot(std::uint64_t b) const override { return slot_of_[b] != no_slot; }

 private:
  static constexpr std::uint32_t no_slot = ~0u;
  std::uint8_t* view_of(std::uint64_t b) const { return view_ + space_.offset(b); }

  std::uint8_t* view_ = nullptr;
  std::uint8_t* staging_ = nullptr;  // slots_ blocks, reused, never freed
  std::uint8_t* zeros_ = nullptr;    // a block of zeros to install fresh blocks from
  std::uint64_t slots_ = 0;
  std::vector<std::uint32_t> slot_of_;  // per block: the slot holding its bytes until installed
  std::vector<std::uint32_t> free_slots_;
};

// Said once per process, not once per region: it is a property of the kernel.
void log_no_anonymous(const RegionConfig& cfg, const std::string& why) {
  static std::once_flag once;
  if (!cfg.log) return;
  std::call_once(once, [&] {
    cfg.log("remote regions use the memfd backing (slower sequential streams): " + why);
  });
}

// Below this many blocks of buffer, staging would take too large a share.
constexpr std::uint64_t min_anonymous_blocks = 4;

// Why this region cannot have the anonymous backing; empty if it can.
std::string anonymous_unavailable(const Space& space, const RegionConfig& cfg, const DonorLink& link) {
  if (cfg.backing == RegionBacking::memfd) return "memfd asked for";
  const auto& k = kernel_support();
  if (!k.error.empty()) return k.error;
  if (!k.anonymous_error.empty()) {
    log_no_anonymous(cfg, k.anonymous_error);
    return k.anonymous_error;
  }
  for (auto* t : {link.fetch.get(), link.writeback.get()})
    // Verbs would have to register (and pin) the faulting range itself for
    // write-backs.
    if (t && t->kind() != TransportKind::tcp) return "needs the tcp transport";
  std::uint64_t buffer_blocks = std::max<std::uint64_t>(1, cfg.buffer_bytes / space.block);
  if (buffer_blocks < min_anonymous_blocks)
    return "a buffer of fewer than " + std::to_string(min_anonymous_blocks) + " blocks";
  // Then each block is allocated once and never freed: nothing to save, and
  // staging would make some of it evicted.
  if (space.count() <= buffer_blocks) return "the whole region fits the buffer";
  return "";
}

}  // namespace

Expected<std::unique_ptr<Backing>> own_backing(Space& space, const RegionConfig& cfg, const DonorLink& link) {
  std::string why = anonymous_unavailable(space, cfg, link);
  if (why.empty()) {
    // NORESERVE: the buffer bounds what is resident, not the lease's size.
    void* view = ::mmap(nullptr, space.mapped, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (view == MAP_FAILED) return sys_error("region mapping", errno);
    space.base = reinterpret_cast<std::uintptr_t>(view);
    // Pages are installed 4 KiB at a time and dropped a block at a time; a
    // forked child could not be served, and would make the pages shared.
    ::madvise(view, space.mapped, MADV_NOHUGEPAGE);
    ::madvise(view, space.mapped, MADV_DONTFORK);
    return std::unique_ptr<Backing>(new AnonymousBacking(space, static_cast<std::uint8_t*>(view)));
  }
  if (cfg.backing == RegionBacking::anonymous) return Error{"anonymous backing: " + why};
  UniqueFd memfd(::memfd_create("memlend-region", MFD_CLOEXEC));
  if (!memfd) return sys_error("region memfd", errno);
  if (::ftruncate(memfd.get(), static_cast<off_t>(space.mapped)) != 0) return sys_error("region memfd size", errno);
  void* view = ::mmap(nullptr, space.mapped, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
  if (view == MAP_FAILED) return sys_error("region mapping", errno);
  space.base = reinterpret_cast<std::uintptr_t>(view);
  return std::unique_ptr<Backing>(new MemfdBacking(space, std::move(memfd), 0, static_cast<std::uint8_t*>(view)));
}

std::unique_ptr<Backing> adopted_backing(Space& space, UniqueFd memfd, std::uint64_t memfd_offset) {
  // The contents are the lease's; whatever the memfd held is dropped, so
  // that the first touch of every page comes to us.
  ::fallocate(memfd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(memfd_offset),
              static_cast<off_t>(space.mapped));
  return std::make_unique<MemfdBacking>(space, std::move(memfd), memfd_offset, nullptr);
}

}  // namespace memlend::rdma::region_detail
