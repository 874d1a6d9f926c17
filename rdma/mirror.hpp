// The mirror: a copy of one VM's remote memory in a file on the shared
// datastore, so that a donor's death loses nothing. One file per VM; each of
// the VM's leases owns a slice of it (RegionConfig::mirror_offset).
//
// What the mirror may lag behind is bounded twice: in space, by the local
// buffer (a block reaches the mirror no later than its eviction, and a block
// is evicted before the buffer overflows), and in time, by the fsync policy
// (and RegionConfig::clean_interval for blocks that stay in the buffer).
#pragma once

#include "rdma/common.hpp"

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace memlend::rdma {

enum class FsyncPolicy {
  never,     // the page cache is enough (tests, benchmarks, a datastore that syncs itself)
  interval,  // fdatasync at most every MirrorOptions::interval
  always,    // fdatasync after every block: nothing acknowledged is lost, slowest
};

struct MirrorOptions {
  FsyncPolicy fsync = FsyncPolicy::interval;
  Millis interval{1000};
};

class MirrorFile {
 public:
  // `<dir>/<name>.mirror`, created 0600 (it holds a VM's memory) and sparse.
  // An existing file is kept: a restarted controller finds its mirror again.
  static Expected<std::shared_ptr<MirrorFile>> open(const std::string& dir, const std::string& name,
                                                    std::uint64_t bytes, const MirrorOptions& options = {});
  ~MirrorFile();

  // Thread-safe: several regions (one per lease) write one VM's mirror.
  Status write(std::uint64_t offset, const void* src, std::size_t length);
  Status read(std::uint64_t offset, void* dst, std::size_t length) const;
  Status resize(std::uint64_t bytes);
  // The range reads as zeros and its blocks go back to the datastore.
  Status punch(std::uint64_t offset, std::uint64_t length);
  // fdatasync now.
  Status sync();
  // Deletes the file (recipient gone, or the VM borrows nothing any more).
  Status remove();

  // The ranges of [offset, offset+length) that hold data (SEEK_DATA): what
  // re-homing has to copy; holes are zeros, which a new lease already is.
  Expected<std::vector<std::pair<std::uint64_t, std::uint64_t>>> data_ranges(std::uint64_t offset,
                                                                             std::uint64_t length) const;

  const std::string& path() const { return path_; }
  std::uint64_t bytes() const { return bytes_.load(); }
  std::uint64_t syncs() const { return syncs_.load(); }

 private:
  MirrorFile(std::string path, UniqueFd fd, UniqueFd direct, std::uint64_t bytes, const MirrorOptions& options);
  Status after_write();

  std::string path_;
  UniqueFd fd_;
  UniqueFd direct_fd_;  // the same file with O_DIRECT, for aligned writes; may be none
  std::atomic<bool> direct_ok_;
  std::atomic<std::uint64_t> bytes_;
  MirrorOptions options_;
  std::mutex sync_mu_;
  Clock::time_point last_sync_;
  std::atomic<std::uint64_t> syncs_{0};
};

// The mirror's file name for a VM, so that the control plane can delete the
// mirror of a recipient that died without opening it.
std::string mirror_path(const std::string& dir, const std::string& name);
Status remove_mirror(const std::string& path);

}  // namespace memlend::rdma
