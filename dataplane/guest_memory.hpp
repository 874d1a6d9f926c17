// The host's side of leases on real QEMU guests: one memory file per VM in a
// FUSE mount (memfs/), sized to the most the VM may borrow, which the VM's
// QEMU maps as the memdev of a virtio-mem device; and the plugging of lent
// memory into the guest through QMP. A lease attached adds its memory to the
// VM's file and raises the device's requested size; a lease detached lowers
// it first, waits for the guest to unplug (QEMU then punches the memory out
// of the file, and memlend out of the donor's pool), and moves what the guest
// still keeps onto the VM's other leases before the lease is given back.
//
// The memory file must exist before QEMU starts, so every configured VM's
// file is made when the mount is, with no lease: QEMU punches the whole
// memdev when it realises the device, and the guest sees nothing plugged.
#pragma once

#include "core/expected.hpp"
#include "memfs/memory_fs.hpp"
#include "rdma/memory_file.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace memlend {

// One VM whose QEMU maps its memory file.
struct QemuGuestConfig {
  std::string qmp;             // its QMP socket
  std::uint64_t max_bytes = 0; // the file's size: the memdev's, the most it may borrow
  // The virtio-mem device's id; empty: the one whose memdev maps the file.
  std::string device;
};

struct GuestMemoryOptions {
  std::string dir = "/run/memlend/mem";  // the mount: DIR/<vm> for each VM
  std::map<std::string, QemuGuestConfig> vms;
  std::string datastore;  // where mirror files go; empty: none
  std::uint64_t block_bytes = 2 << 20;
  rdma::TransportKind transport = rdma::TransportKind::tcp;
  rdma::Timeouts timeouts;
  // How long the guest's driver may take to plug or unplug.
  std::chrono::milliseconds plug_timeout{120000};
  std::function<void(const std::string& vm, std::uint64_t lease, const rdma::RegionEvent&)> on_event;
  std::function<void(const std::string&)> log;
};

// Parses "NAME,qmp=SOCKET,max-mib=MIB[,device=ID]" (the --qemu-vm option).
Expected<std::pair<std::string, QemuGuestConfig>> parse_qemu_vm(const std::string& text);

class GuestMemory {
 public:
  // Mounts `dir` (made if missing) and makes every VM's file.
  static Expected<std::unique_ptr<GuestMemory>> start(const GuestMemoryOptions& options);
  ~GuestMemory();

  bool serves(const std::string& vm) const;
  std::string path_of(const std::string& vm) const;

  rdma::Status attach(const std::string& vm, std::uint64_t lease, const rdma::LeaseTarget& target);
  rdma::Status detach(const std::string& vm, std::uint64_t lease);
  void fail_over(const std::string& vm, std::uint64_t lease, const std::string& why);
  rdma::Status rehome(const std::string& vm, std::uint64_t old_lease, std::uint64_t lease,
                      const rdma::LeaseTarget& target);
  std::vector<std::uint64_t> leases_of(const std::string& vm) const;
  rdma::MemoryFileStats stats(const std::string& vm) const;
  // What each VM's device has plugged, as memlend last asked for it.
  std::uint64_t requested(const std::string& vm) const;

  // Unmounts; a QEMU still mapping a file gets errors from then on.
  void stop();

 private:
  struct Vm {
    QemuGuestConfig config;
    std::shared_ptr<rdma::MemoryFile> file;
    std::map<std::uint64_t, std::uint64_t> lent;  // lease → bytes
    // Leases that ended but are still in the file: the guest kept blocks on
    // them that the other leases had no room for yet. Tried again at every
    // detach, once the guest has given back more.
    std::set<std::uint64_t> leaving;
    std::uint64_t requested = 0;
    std::string device;  // found once
  };
  GuestMemory(GuestMemoryOptions options, std::unique_ptr<memfs::MemoryFs> fs);
  rdma::Status plug(const std::string& name, Vm& vm, std::uint64_t bytes);
  Vm* find(const std::string& vm);
  const Vm* find(const std::string& vm) const;

  GuestMemoryOptions options_;
  std::unique_ptr<memfs::MemoryFs> fs_;
  mutable std::mutex mu_;  // vms_' maps; a VM's plugging runs on the data plane's one worker
  std::map<std::string, Vm> vms_;
};

}  // namespace memlend
