// userfaultfd as a remote region uses it: what this kernel can do, and the
// registered range cut into blocks.
#pragma once

#include "rdma/common.hpp"

#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <cstdint>
#include <string>

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

namespace memlend::rdma::region_detail {

inline std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

// A userfaultfd: /dev/userfaultfd first, since it handles faults taken in the
// kernel too (a VMM's read() into guest memory), then the system call.
Expected<UniqueFd> new_userfaultfd();

// What this kernel's userfaultfd can do, found once per process on a scratch
// page: a handshake asking for nothing reports every feature, and a
// write-protected UFFDIO_CONTINUE (6.5+) either works or is refused.
struct KernelSupport {
  std::uint64_t features = 0;
  bool continue_wp = false;
  std::string error;
  std::string anonymous_error;  // why the anonymous backing cannot be had; empty if it can
};
const KernelSupport& kernel_support();

// The registered range: where it sits in the faulting address space, how it
// is cut into blocks, and the userfaultfd that serves it.
struct Space {
  std::uint64_t page = 4096;
  std::uint64_t block = 0;
  std::uint64_t bytes = 0;   // the lease's
  std::uint64_t mapped = 0;  // bytes rounded up to pages
  std::uintptr_t base = 0;
  UniqueFd uffd;

  std::uint64_t offset(std::uint64_t b) const { return b * block; }
  // The lease bytes of block b (the last one may be short).
  std::uint64_t length(std::uint64_t b) const { return std::min(block, bytes - offset(b)); }
  // The pages of block b, for userfaultfd ranges.
  std::uint64_t span(std::uint64_t b) const { return round_up(length(b), page); }
  std::uint64_t count() const { return (bytes + block - 1) / block; }

  void wake(std::uint64_t start, std::uint64_t len) const {
    uffdio_range r{base + start, len};
    ::ioctl(uffd.get(), UFFDIO_WAKE, &r);
  }
  void wake_block(std::uint64_t b) const { wake(offset(b), span(b)); }
  // Setting protection never wakes (the kernel refuses DONTWAKE with WP);
  // clearing it wakes the writers that waited.
  bool write_protect(std::uint64_t b, bool on) const {
    uffdio_writeprotect w{{base + offset(b), span(b)}, on ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
    return ::ioctl(uffd.get(), UFFDIO_WRITEPROTECT, &w) == 0;
  }
};

}  // namespace memlend::rdma::region_detail
