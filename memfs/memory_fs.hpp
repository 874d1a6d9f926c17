// The memory file system: lent memory as files a VMM maps shared. One FUSE
// mount (libfuse3's low-level API) holds one flat directory of memory files
// (rdma/memory_file.hpp), one per VM; `memlend mount` serves one. A page
// fault on a mapping becomes a READ answered from the donor, a written-back
// dirty page a WRITE sent to the donor and the mirror, and memory the guest
// unplugs an fallocate(PUNCH_HOLE) that gives it back. The page cache is the
// local buffer; the VM's memory cgroup bounds it (firmware_hooks/cgroup.hpp).
//
// Who may open a file: the mount allows other users (the VMM usually runs as
// its own user) but lets the kernel check each file's mode, 0600 and owned
// by the configured user, so nobody else on the host reads a VM's memory.
#pragma once

#include "core/expected.hpp"
#include "rdma/memory_file.hpp"

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace memlend::memfs {

using rdma::Status;
using rdma::ok;

struct MountOptions {
  std::string mountpoint;
  uid_t owner_uid = 0;  // of every file; the mounting user by default
  gid_t owner_gid = 0;
  bool owner_set = false;
  unsigned max_threads = 8;  // requests served at once
  std::function<void(const std::string&)> log;
};

// What the FUSE side has answered, beside the engines' own statistics.
struct FsStats {
  std::uint64_t reads = 0, writes = 0, punches = 0, truncates = 0, syncs = 0;
  std::uint64_t errors = 0;   // requests answered with an error
  std::uint64_t open_handles = 0;
};

// The directory must exist, be a directory, and not be a mount point
// already (a second mount over a VM's memory would hide it).
Status check_mountpoint(const std::string& dir);

// Keeps the process that serves the page cache from needing the reclaim it
// serves: see the definition. Returns what it could not do, for the log.
std::string harden_server_process();

class MemoryFs {
 public:
  static Expected<std::unique_ptr<MemoryFs>> mount(const MountOptions& options);
  ~MemoryFs();
  MemoryFs(const MemoryFs&) = delete;
  MemoryFs& operator=(const MemoryFs&) = delete;

  // `name` appears in the mount (a plain name, no slash); an existing name
  // is an error. The file stays served while it is open, even once removed.
  Status add_file(const std::string& name, std::shared_ptr<rdma::MemoryFile> file);
  Status remove_file(const std::string& name);
  std::string path_of(const std::string& name) const;

  // Unmounts and ends the request threads, within a few seconds: a file still
  // mapped by a VMM is cut off (its users get errors) rather than waited for.
  void stop();
  FsStats stats() const;

  // What the FUSE callbacks see (their userdata).
  struct Impl;

 private:
  explicit MemoryFs(std::shared_ptr<Impl> impl);
  // Shared with the request loop's thread, which may outlive a stop() that
  // had to give up on it.
  std::shared_ptr<Impl> impl_;
};

}  // namespace memlend::memfs
