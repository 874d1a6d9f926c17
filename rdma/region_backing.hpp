// Where a remote region's bytes live while they are in the buffer, and how a
// block is mapped and dropped: the two backings described in region.hpp
// (anonymous memory installed from staging slots, or a memfd mapped with
// minor faults). Its state (the staging slots) is the region's mutex's to
// guard (see region_impl.hpp): calls made without it (punch() from an
// eviction, register_memory() from a re-home, init and teardown) touch none.
#pragma once

#include "rdma/handoff.hpp"
#include "rdma/region.hpp"
#include "rdma/region_uffd.hpp"

#include <cstdint>
#include <memory>
#include <string>

namespace memlend::rdma::region_detail {

// How a buffer of `total` blocks is shared out.
struct BufferPlan {
  std::uint64_t capacity = 1;  // blocks resident at once
  std::uint64_t slots = 0;     // staging slots (anonymous)
  unsigned depth = 0;          // read-ahead blocks
  std::uint64_t reserve = 0;   // free slots eviction keeps ahead of need
};

class Backing {
 public:
  explicit Backing(const Space& space) : space_(space) {}
  virtual ~Backing() = default;
  Backing(const Backing&) = delete;
  Backing& operator=(const Backing&) = delete;

  virtual RegionBacking kind() const = 0;
  // The region's memory in this process; null for an adopted one.
  virtual void* view() const = 0;
  // What the userfaultfd handshake and registration must ask for.
  virtual std::uint64_t features() const = 0;
  virtual std::uint64_t register_modes() const = 0;
  // Whether blocks are mapped write-protected, so that first writes are seen.
  virtual bool write_protects(const KernelSupport& k) const = 0;
  // After registration: maps the buffer and shares out its `total` blocks.
  virtual Expected<BufferPlan> prepare(std::uint64_t total, unsigned prefetch) = 0;
  // A connection reads into and writes from the buffer.
  virtual Status register_memory(LeaseConnection& t) = 0;
  // Whether a new donor's connection can serve this backing.
  virtual Status accepts(const LeaseConnection& t) const = 0;

  // Where a fetch of block b lands.
  virtual std::uint8_t* landing(std::uint64_t b) const = 0;
  // What a write-back of block b sends.
  virtual const std::uint8_t* contents(std::uint64_t b, bool in_view) const = 0;
  // Readies block b's landing for a fetch, or for a zero block (nothing to
  // fetch), fills it with zeros.
  virtual void ready(std::uint64_t b, bool zero) = 0;
  virtual bool map(std::uint64_t b, bool write_protect) = 0;
  // A fault on a page of a block already mapped.
  virtual void map_page(std::uintptr_t addr, bool write_protect) = 0;
  // Drops block b's pages: unmapped, and their memory freed.
  virtual void punch(std::uint64_t b) = 0;
  // A lost block that cannot be poisoned: what it is mapped with.
  virtual void zero_lost(std::uint64_t b) = 0;
  // Unmaps everything; the region is detached.
  virtual void release() = 0;

  // Staging (anonymous only): a fetch lands in a slot until it is installed.
  // Slots are held by reads in flight, by blocks that arrived unmapped, and
  // by such blocks being evicted.
  virtual bool stages(bool zero) const { return false; }
  virtual bool slot_free() const { return true; }
  virtual void stage(std::uint64_t b) {}
  virtual void release_slot(std::uint64_t b) {}
  virtual bool holds_slot(std::uint64_t b) const { return false; }

 protected:
  const Space& space_;
};

// This process's memory: anonymous where the kernel, the links and the sizes
// allow it (and `backing` does not ask for memfd), else a memfd. Sets
// space.base; space.page, mapped and block must be set.
Expected<std::unique_ptr<Backing>> own_backing(Space& space, const RegionConfig& cfg, const DonorLink& link);
// Another process's memfd, handed over.
std::unique_ptr<Backing> adopted_backing(Space& space, UniqueFd memfd, std::uint64_t memfd_offset);

}  // namespace memlend::rdma::region_detail
