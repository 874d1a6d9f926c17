// A memory cgroup for a process memlend starts: a QEMU whose guest memory is a
// shared mapping of a file memlend serves. The host's page cache holds that
// file's pages as the guest writes them; left alone it would grow to the whole
// lent size on the VM's host, which is what lending memory is meant to spare.
// A memory cgroup's limit counts the page cache its processes fault in, so the
// kernel must write dirty pages back (to the file's server, i.e. to the lender)
// and drop them to stay under it: the cgroup bounds what a VM's lent memory
// costs its own host.
//
// The cgroup is made below this process's own memory cgroup, not at the root
// of the hierarchy: a process moved there would escape the limits its own
// supervisor (systemd, a container) set, and under cgroup v2 only one's own
// subtree is delegated. Cgroup v1 (memory.limit_in_bytes) and v2 (memory.max)
// are both handled, whichever holds the memory controller.
#pragma once

#include "core/expected.hpp"

#include <sys/types.h>

#include <cstdint>
#include <string>

namespace memlend::cgroup {

enum class Version { v1, v2 };

// What the cgroup's processes charge now, in bytes (counts for the others).
struct MemoryStats {
  std::uint64_t usage = 0;
  std::uint64_t peak = 0;  // 0 where the kernel keeps none (v2 before 5.19)
  std::uint64_t limit = 0;
  std::uint64_t anon = 0;
  std::uint64_t file = 0;  // page cache, the shared file mapping's pages among it
  std::uint64_t file_dirty = 0;
  std::uint64_t file_writeback = 0;
  std::uint64_t oom_kills = 0;
};

class MemoryCgroup {
 public:
  // Makes `name` below this process's memory cgroup, limited to `limit_bytes`.
  // ErrorCode::unavailable where there is no memory controller or no right to
  // make one (not root, a v2 subtree not delegated).
  static Expected<MemoryCgroup> create(const std::string& name, std::uint64_t limit_bytes);

  MemoryCgroup(MemoryCgroup&& other) noexcept;
  MemoryCgroup& operator=(MemoryCgroup&& other) noexcept;
  MemoryCgroup(const MemoryCgroup&) = delete;
  MemoryCgroup& operator=(const MemoryCgroup&) = delete;
  // remove(), whose failure can only be dropped here.
  ~MemoryCgroup();

  Version version() const { return version_; }
  const std::string& path() const { return path_; }
  // Where a process writes "0" to join: a child between fork and exec, so that
  // all it ever charges counts here (a page is charged where it was faulted,
  // and stays there when the process moves).
  std::string procs_file() const { return path_ + "/cgroup.procs"; }
  Expected<void> add(pid_t pid);
  Expected<MemoryStats> stats() const;
  // Moves the processes still inside back to this process's cgroup and removes the directory.
  Expected<void> remove();

 private:
  MemoryCgroup(Version version, std::string path, std::string home);
  Version version_ = Version::v1;
  std::string path_;    // empty once removed
  std::string home_;    // the cgroup this process is in: where processes left inside go back
};

}  // namespace memlend::cgroup
