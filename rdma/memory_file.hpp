// Lent memory as a file: the engine behind the FUSE memory file (memfs/) that
// an unmodified QEMU maps shared as a virtio-mem memdev. Unlike the remote
// region it keeps no buffer of its own: the host's page cache is the local
// buffer (bounded by the VM's memory cgroup), and this engine only answers
// what the kernel asks, a range at a time.
//
// Placement. The guest, not the host, decides which blocks of a virtio-mem
// device it plugs, so the file is as large as the most the VM may borrow and
// its blocks are placed on lent memory as they are first written: file block
// → slot, a block-sized extent of one lease. A block never written (or
// punched since) has no slot and reads as zeros without a transfer. A free
// slot always holds zeros at its donor (a new lease is zeroed, and a freed
// slot is discarded there), so placing a block never needs a zero-fill.
//
// The mirror is indexed by file offset, so that it is the image of the file:
// a donor's death leaves every block it held readable from the mirror, and
// re-homing copies those blocks onto the new lease's slots.
//
// Concurrency. Requests come from several FUSE threads at once. One mutex
// guards the map, the slots and the leases' states; it is never held across
// a transfer. Each block also has a lock (striped): reads and writes take it
// shared, so they overlap within a block, and what changes where a block
// lives (a punch, a re-home's copy, a move off a reclaimed lease) takes it
// exclusive, so no transfer ever goes to a slot that is being given up.
#pragma once

#include "rdma/common.hpp"
#include "rdma/mirror.hpp"
#include "rdma/region.hpp"
#include "rdma/transport.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace memlend::rdma {

struct MemoryFileConfig {
  std::uint64_t bytes = 0;              // the file's size: the most the VM may borrow
  std::uint64_t block_bytes = 2 << 20;  // placement unit; virtio-mem's default block
  std::shared_ptr<MirrorFile> mirror;   // file-offset indexed; none: a donor's death loses its blocks
  TransportKind transport = TransportKind::automatic;
  Timeouts timeouts;
  // Connections per lease, taken by requests in flight; more requests wait.
  unsigned connections = 4;
  // Called from request threads, with the lease's id; must not call back
  // into the file.
  std::function<void(std::uint64_t lease, const RegionEvent&)> on_event;
};

struct MemoryFileStats {
  std::uint64_t reads = 0;               // requests served
  std::uint64_t writes = 0;
  std::uint64_t punches = 0;
  std::uint64_t bytes_fetched = 0;       // from donors
  std::uint64_t bytes_zero_filled = 0;   // read where nothing was ever written
  std::uint64_t bytes_written_back = 0;  // to donors
  std::uint64_t bytes_punched = 0;       // whole blocks given back to donors
  std::uint64_t mirror_bytes_read = 0;
  std::uint64_t mirror_bytes_written = 0;
  std::uint64_t failovers = 0;
  std::uint64_t rehomes = 0;
  std::uint64_t blocks_placed = 0;       // now
  std::uint64_t slots = 0;               // all leases' slots
  std::uint64_t leases = 0;
  std::uint64_t degraded_leases = 0;     // donor gone, served by the mirror
  std::uint64_t lost_leases = 0;         // donor gone, no mirror
  bool mirror_failed = false;
  std::string error;                     // the last donor or mirror failure
  LatencyHistogram::Snapshot read_latency;
};

class MemoryFile {
 public:
  static Expected<std::unique_ptr<MemoryFile>> create(const MemoryFileConfig& config);
  ~MemoryFile();
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;

  // A lease's memory becomes slots (whole blocks of it; a remainder is
  // unused). `id` names it to fail_over, rehome and remove_lease.
  Status add_lease(std::uint64_t id, const LeaseTarget& target);
  // Moves the lease's blocks to free slots of other leases, then forgets it:
  // the caller may release it. Refused, with nothing moved, if the others
  // have too few free slots.
  Status remove_lease(std::uint64_t id);
  // The control plane knows the lease's donor is gone.
  void fail_over(std::uint64_t id, const std::string& reason);
  // A degraded lease's blocks go from the mirror to `target` (same size,
  // fresh), which replaces it and is named `new_id` from then on. Requests
  // go on meanwhile.
  Status rehome(std::uint64_t id, std::uint64_t new_id, const LeaseTarget& target);
  // The leases' ids, in the order they were added.
  std::vector<std::uint64_t> lease_ids() const;

  // Zeros where the file holds nothing. Errors: refused (out of range),
  // lost (the donor is gone and there is no mirror), io.
  Status read(std::uint64_t offset, void* dst, std::size_t length);
  // Places blocks as needed; refused with no_space when no slot is free.
  Status write(std::uint64_t offset, const void* src, std::size_t length);
  // Reads as zeros afterwards; whole blocks go back to their donor.
  Status punch(std::uint64_t offset, std::uint64_t length);
  // Up to capacity(); shrinking punches what falls off the end.
  Status resize(std::uint64_t bytes);
  // Syncs the mirror: what was answered is on the datastore.
  Status flush();

  std::uint64_t size() const;
  std::uint64_t capacity() const;  // the configured size: resize's bound
  std::uint64_t block_bytes() const;
  MemoryFileStats stats() const;

 private:
  struct Impl;
  explicit MemoryFile(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace memlend::rdma
