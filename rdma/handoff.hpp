// Taking over another process's memory: a VMM that keeps its guest memory in
// a memfd hands memlend a fresh userfaultfd, that memfd and where the memory
// sits in its address space, over a Unix socket (SCM_RIGHTS) — the way VMMs
// hand guest memory to an external page-fault handler. memlend then does the
// userfaultfd handshake and registration itself (they act on the creator's
// address space, whoever calls them), so the VMM's side is only this message.
#pragma once

#include "rdma/common.hpp"

#include <cstdint>

namespace memlend::rdma {

// The fixed-size description that travels with the two descriptors.
struct RegionHandoff {
  std::uint64_t base = 0;          // address of the region in the sender
  std::uint64_t bytes = 0;         // its length (a multiple of the page size)
  std::uint64_t memfd_offset = 0;  // where the region starts in the memfd
};

struct HandedRegion {
  UniqueFd uffd;
  UniqueFd memfd;
  RegionHandoff region;
  // The socket it came on: when it closes, the sender (the VM) is gone.
  UniqueFd peer;
};

// The VMM's side (tests use it as a stand-in VMM). `uffd` must be fresh:
// created, not yet handshaken.
Status send_region(int unix_socket, int uffd, int memfd, const RegionHandoff& region);

// memlend's side: waits at most `timeout` for one handoff on a connected
// socket, which it keeps (HandedRegion::peer).
Expected<HandedRegion> receive_region(UniqueFd unix_socket, Millis timeout);

}  // namespace memlend::rdma
