// A real QEMU guest for the tests: Debian's cloud kernel and an initramfs whose
// init runs the guest workload (tests/guest/), with a virtio-mem device whose
// memory is a shared mapping of a file the test names, the way lent memory
// reaches a VM. QEMU is a Child (its own process group, stopped on every path);
// its console goes to a file in a temporary directory, beside its QMP socket;
// optionally it runs in a memory cgroup of its own from its first instruction.
#pragma once

#include "core/expected.hpp"
#include "firmware_hooks/cgroup.hpp"
#include "firmware_hooks/qmp.hpp"
#include "tests/support/child.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace memlend::test {

// What packaging/guest-image.sh made in `dir` (the build tree's guest/).
struct GuestImage {
  std::string kernel;
  std::string initramfs;
  std::string unavailable;  // why there is no guest to boot; empty when there is
};
GuestImage guest_image(const std::string& dir);

// qemu-system-x86_64 on the PATH, or "".
std::string qemu_binary();

struct QemuGuestOptions {
  std::string memory_file;                    // the device's mem-path
  std::uint64_t memdev_bytes = 512ull << 20;  // its size: the most the guest can be given
  std::uint64_t base_bytes = 256ull << 20;    // the guest's boot memory, QEMU's own anonymous memory
  std::string kernel_args;                    // after the guest's own: memlend.plug_mib=256 ...
  std::string device_id = "vm0";
  unsigned vcpus = 1;
  // TCG's translation cache: QEMU's default is a gigabyte, which would dwarf
  // the guest in a QEMU's memory (and in its cgroup).
  unsigned tb_mib = 64;
  std::uint64_t cgroup_limit = 0;  // > 0: QEMU runs in a memory cgroup this large
  // More QMP sockets, for memlend: QEMU serves one client per socket.
  std::vector<std::string> extra_qmp;
  // A virtio-balloon device (id balloon0), as Proxmox gives its VMs.
  bool balloon = false;
  // What QEMU runs under, e.g. nsenter into the mount namespace where its
  // memory file is mounted; empty: QEMU itself.
  std::vector<std::string> launcher;
  // QEMU waits for a migration on this URI (-incoming tcp:HOST:PORT) instead
  // of booting; the guest's devices must be the source's.
  std::string incoming;
};

class QemuGuest {
 public:
  // Boots the guest and connects to QMP. ErrorCode::unavailable when the
  // cgroup cannot be had, failed when QEMU does not start (with its stderr).
  static Expected<std::unique_ptr<QemuGuest>> start(const GuestImage& image, const std::string& qemu,
                                                    QemuGuestOptions options,
                                                    std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Stops QEMU, then removes the cgroup and the temporary directory.
  ~QemuGuest();
  QemuGuest(const QemuGuest&) = delete;
  QemuGuest& operator=(const QemuGuest&) = delete;

  qmp::Client& qmp() { return *qmp_; }
  const QemuGuestOptions& options() const { return options_; }
  // The console line holding `needle`; "" when QEMU ended first or the wait ran out.
  std::string wait_line(const std::string& needle, std::chrono::milliseconds timeout);
  std::string console() const;
  // Its exit status once the guest powered off, as Child::wait.
  int wait_exit(std::chrono::milliseconds timeout);
  bool running() { return child_->running(); }
  pid_t pid() const;

  // QEMU's memory now, from /proc/PID/status, in KiB.
  struct Rss {
    long anon_kib = 0, file_kib = 0, shmem_kib = 0, peak_kib = 0;
  };
  Rss rss() const;
  // The cgroup QEMU runs in, when options.cgroup_limit asked for one.
  cgroup::MemoryCgroup* memory_cgroup() { return cgroup_ ? &*cgroup_ : nullptr; }

 private:
  QemuGuest() = default;
  QemuGuestOptions options_;
  std::string dir_;
  std::optional<cgroup::MemoryCgroup> cgroup_;
  std::unique_ptr<Child> child_;
  std::optional<qmp::Client> qmp_;
};

}  // namespace memlend::test
