#include "rdma/region_uffd.hpp"

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

namespace memlend::rdma::region_detail {

Expected<UniqueFd> new_userfaultfd() {
  UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  if (dev) {
    int fd = ::ioctl(dev.get(), USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) return UniqueFd(fd);
  }
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK));
  if (fd < 0)
    return sys_error("userfaultfd (needs /dev/userfaultfd access, or vm.unprivileged_userfaultfd=1, or CAP_SYS_PTRACE)", errno);
  return UniqueFd(fd);
}

namespace {

// Write-protected UFFDIO_COPY into anonymous memory (Linux 5.7+), tried on a
// scratch page: the anonymous backing's install step.
std::string probe_anonymous() {
  auto fd = new_userfaultfd();
  if (!fd) return fd.error().message;
  uffdio_api api{UFFD_API, UFFD_FEATURE_PAGEFAULT_FLAG_WP, 0};
  if (::ioctl(fd->get(), UFFDIO_API, &api) != 0)
    return "this kernel's userfaultfd lacks write-protect faults on anonymous memory (Linux 5.7+)";
  long page = ::sysconf(_SC_PAGESIZE);
  void* dst = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  void* src = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  std::string why = "could not map a scratch page";
  if (dst != MAP_FAILED && src != MAP_FAILED) {
    uffdio_register reg{{reinterpret_cast<std::uintptr_t>(dst), static_cast<std::uint64_t>(page)},
                        UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP, 0};
    uffdio_copy c{reinterpret_cast<std::uintptr_t>(dst), reinterpret_cast<std::uintptr_t>(src),
                  static_cast<std::uint64_t>(page), UFFDIO_COPY_MODE_WP, 0};
    if (::ioctl(fd->get(), UFFDIO_REGISTER, &reg) != 0)
      why = "this kernel cannot register anonymous memory for write-protect faults";
    else if (::ioctl(fd->get(), UFFDIO_COPY, &c) != 0)
      why = "this kernel refuses a write-protected UFFDIO_COPY";
    else
      why.clear();
  }
  if (dst != MAP_FAILED) ::munmap(dst, page);
  if (src != MAP_FAILED) ::munmap(src, page);
  return why;
}

}  // namespace

const KernelSupport& kernel_support() {
  static const KernelSupport support = [] {
    KernelSupport k;
    auto fd = new_userfaultfd();
    if (!fd) {
      k.error = fd.error().message;
      return k;
    }
    uffdio_api api{UFFD_API, 0, 0};
    if (::ioctl(fd->get(), UFFDIO_API, &api) != 0) {
      k.error = "userfaultfd handshake failed";
      return k;
    }
    k.features = api.features;
    std::uint64_t need = UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_MISSING_SHMEM;
    if ((k.features & need) != need) {
      k.error = "this kernel's userfaultfd lacks minor or write-protect faults on shared memory (Linux 5.19+)";
      return k;
    }
    auto probe = new_userfaultfd();
    if (!probe) return k;
    uffdio_api api2{UFFD_API, need, 0};
    long page = ::sysconf(_SC_PAGESIZE);
    UniqueFd mfd(::memfd_create("memlend-probe", MFD_CLOEXEC));
    if (::ioctl(probe->get(), UFFDIO_API, &api2) != 0 || !mfd || ::ftruncate(mfd.get(), page) != 0) return k;
    void* view = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED, mfd.get(), 0);
    void* alias = ::mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED, mfd.get(), 0);
    if (view != MAP_FAILED && alias != MAP_FAILED) {
      uffdio_register reg{{reinterpret_cast<std::uintptr_t>(view), static_cast<std::uint64_t>(page)},
                          UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP, 0};
      if (::ioctl(probe->get(), UFFDIO_REGISTER, &reg) == 0) {
        static_cast<char*>(alias)[0] = 1;
        uffdio_continue c{{reinterpret_cast<std::uintptr_t>(view), static_cast<std::uint64_t>(page)},
                          UFFDIO_CONTINUE_MODE_WP, 0};
        k.continue_wp = ::ioctl(probe->get(), UFFDIO_CONTINUE, &c) == 0;
      }
    }
    if (view != MAP_FAILED) ::munmap(view, page);
    if (alias != MAP_FAILED) ::munmap(alias, page);
    k.anonymous_error = probe_anonymous();
    return k;
  }();
  return support;
}

}  // namespace memlend::rdma::region_detail
