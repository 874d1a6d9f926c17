// The remote region: a range of a process's address space whose contents
// live on a donor, registered with userfaultfd. Two backings:
//
// - anonymous (a region of this process, over TCP): private anonymous
//   memory; a fault on an absent block fetches the whole block into a small
//   staging area that is reused, never freed, and installs it with a
//   write-protected UFFDIO_COPY; eviction drops the pages (MADV_DONTNEED).
//   Shared memory pays far more per page to allocate and free, which is what
//   bounded sequential throughput;
// - memfd (another process's memory, verbs, small buffers, older kernels): a
//   shared memfd mapping with minor faults; the block is fetched into the
//   memfd through a second mapping nobody faults on and mapped with
//   UFFDIO_CONTINUE; eviction punches it out of the memfd.
//
// Either way:
// - a sequential stream gets the next blocks prefetched and mapped before it
//   touches them;
// - blocks are mapped write-protected, so the first write to a block is seen
//   and only dirty blocks are ever written back;
// - at most buffer_bytes of blocks are resident (the local buffer, staging
//   included); eviction runs in its own thread, ahead of need: it
//   write-protects a dirty block so writers wait, writes it to the donor
//   while a mirror writer thread writes it to the mirror, and once both are
//   done drops it, which unmaps it and frees the memory;
// - when the donor fails, faults are served from the mirror and write-backs
//   go to the mirror only, until rehome() moves the lease to a new donor;
// - with neither donor nor mirror, the blocks that cannot be served are
//   poisoned: the faulting thread gets SIGBUS (a VMM reports a memory error to
//   its guest), the region reports the error, and nothing hangs.
#pragma once

#include "rdma/common.hpp"
#include "rdma/handoff.hpp"
#include "rdma/mirror.hpp"
#include "rdma/stats.hpp"
#include "rdma/transport.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace memlend::rdma {

enum class RegionState {
  remote,    // served by the donor
  degraded,  // donor gone: served by the mirror
  failed,    // donor gone and no mirror: unreachable blocks are poisoned
  detached,  // the recipient (or the VM that handed its memory over) is gone, or detach() was called
};
const char* region_state_name(RegionState s);

struct RegionEvent {
  enum class Kind { donor_failed, failover_to_mirror, rehomed, region_failed, recipient_gone, mirror_failed };
  Kind kind;
  std::string detail;
};
const char* region_event_name(RegionEvent::Kind k);

enum class RegionBacking {
  automatic,  // anonymous where it can be, else memfd
  anonymous,  // create() fails where it cannot be
  memfd,
};
const char* region_backing_name(RegionBacking b);

struct RegionConfig {
  std::uint64_t bytes = 0;                 // arbitrary; the lease's size
  std::uint64_t block_bytes = 1 << 20;     // rdma_block_kib; rounded up to the page size
  std::uint64_t buffer_bytes = 1 << 20;    // the local buffer; at least one block
  std::shared_ptr<MirrorFile> mirror;      // none: a donor failure fails the region
  std::uint64_t mirror_offset = 0;         // this lease's slice of the VM's mirror
  unsigned prefetch_blocks = 8;            // read-ahead depth for sequential streams
  // The lease is freshly granted (zeros): a block never written back is not
  // fetched at all, only zero-filled here. False for a lease with contents.
  bool fresh_lease = true;
  // Busy-poll before sleeping: waking a sleeping thread costs tens of µs on a
  // virtual machine's idle CPU, more than a 4 KiB fetch; 0 never spins.
  std::chrono::microseconds spin{200};
  // Write dirty blocks back this often even if they are not evicted, to bound
  // the mirror's lag in time; 0: only on eviction and flush().
  Millis clean_interval{0};
  Timeouts timeouts;
  RegionBacking backing = RegionBacking::automatic;
  // Called from the region's threads; must not call back into the region.
  std::function<void(const RegionEvent&)> on_event;
  // Told once per process when this kernel cannot give a region the
  // anonymous backing (and it falls back to memfd).
  std::function<void(const std::string&)> log;
};

// The two connections a region uses: faults read on one, write-back writes on
// the other, so a fault never queues behind a megabyte being written back.
struct DonorLink {
  std::unique_ptr<LeaseConnection> fetch;
  std::unique_ptr<LeaseConnection> writeback;
};
Expected<DonorLink> connect_link(const LeaseTarget& lease, TransportKind kind, const Timeouts& timeouts);

struct RegionStats {
  RegionState state = RegionState::remote;
  std::string error;                  // why the region is failed or degraded
  std::uint64_t faults = 0;           // missing and minor faults served
  std::uint64_t write_faults = 0;     // first writes to clean blocks
  std::uint64_t fetches = 0;          // blocks read on a fault
  std::uint64_t prefetches = 0;       // blocks read ahead of a fault
  std::uint64_t evictions = 0;
  std::uint64_t clean_evictions = 0;  // evicted without a write-back
  std::uint64_t bytes_read = 0;       // from the donor
  std::uint64_t bytes_written = 0;    // to the donor
  std::uint64_t mirror_bytes_read = 0;
  std::uint64_t mirror_bytes_written = 0;
  std::uint64_t failovers = 0;
  std::uint64_t rehomes = 0;
  bool mirror_failed = false;         // a write or read of the mirror failed: it is no copy any more
  std::string mirror_error;
  std::uint64_t resident_bytes = 0;   // in the local buffer now
  std::uint64_t buffer_bytes = 0;     // its bound
  std::uint64_t block_bytes = 0;
  bool dirty_tracking = false;        // the kernel maps blocks write-protected
  RegionBacking backing = RegionBacking::memfd;  // the one chosen
  LatencyHistogram::Snapshot fault_latency;  // from reading a fault to waking its thread
};

class RemoteRegion {
 public:
  // A region in this process's address space, at data().
  static Expected<std::unique_ptr<RemoteRegion>> create(const RegionConfig& config, DonorLink link);
  // Another process's memory, handed over with receive_region(); data() is
  // null. config.bytes must equal the handed region's length.
  static Expected<std::unique_ptr<RemoteRegion>> adopt(const RegionConfig& config, HandedRegion handed,
                                                       DonorLink link);
  virtual ~RemoteRegion() = default;

  virtual void* data() const = 0;
  virtual std::uint64_t size() const = 0;

  // Writes every block dirtied before the call back to the donor and the
  // mirror (and syncs the mirror); blocks stay in the buffer.
  virtual Status flush() = 0;
  // flush(), then drops every block from the buffer. For a quiescent region:
  // before migrating the VM to its donor, and in tests.
  virtual Status evict_all() = 0;
  // The control plane knows the donor is gone before a fault found out.
  virtual void fail_over(const std::string& reason) = 0;
  // Moves a degraded region to a new lease (same size, fresh and zeroed): the
  // mirror's data is copied to it while faults go on from the mirror, then
  // faults and write-backs switch to the new donor. Blocks until done.
  virtual Status rehome(DonorLink link) = 0;
  // Stops serving faults and unregisters. Touching data() afterwards is the
  // caller's bug. The lease itself is released by the caller.
  virtual Status detach() = 0;

  virtual RegionState state() const = 0;
  virtual RegionStats stats() const = 0;
};

}  // namespace memlend::rdma
