// A stand-in VMM: keeps its "guest memory" in a memfd, hands a fresh
// userfaultfd, the memfd and the region's place to memlend over the Unix
// socket it was given, waits for the go-ahead, then runs a workload on that
// memory and verifies every byte.
//   rdma_vmm_stub SOCKET_FD BYTES PASSES
#include "rdma/handoff.hpp"
#include "tests/rdma/fixture.hpp"

#include <linux/userfaultfd.h>

#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: rdma_vmm_stub SOCKET_FD BYTES PASSES\n");
    return 2;
  }
  int sock = std::atoi(argv[1]);
  std::uint64_t bytes = std::strtoull(argv[2], nullptr, 10);
  int passes = std::atoi(argv[3]);
  int memfd = ::memfd_create("guest-memory", MFD_CLOEXEC);
  if (memfd < 0 || ::ftruncate(memfd, static_cast<off_t>(bytes)) != 0) return 3;
  void* mem = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (mem == MAP_FAILED) return 3;
  int uffd = -1;
  int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    uffd = ::ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
    ::close(dev);
  }
  if (uffd < 0) uffd = static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC));
  if (uffd < 0) return 4;
  memlend::rdma::RegionHandoff h{reinterpret_cast<std::uintptr_t>(mem), bytes, 0};
  if (auto s = memlend::rdma::send_region(sock, uffd, memfd, h); !s) {
    std::fprintf(stderr, "%s\n", s.error().message.c_str());
    return 5;
  }
  // memlend holds its own references now.
  ::close(uffd);
  ::close(memfd);
  pollfd p{sock, POLLIN, 0};
  char go = 0;
  if (::poll(&p, 1, 30000) != 1 || ::read(sock, &go, 1) != 1 || go != 'g') return 6;

  auto* m = static_cast<std::uint8_t*>(mem);
  std::uint64_t bad = 0, verified = 0;
  for (int pass = 1; pass <= passes; ++pass) {
    memlend::test::fill(m, bytes, static_cast<std::uint64_t>(pass));
    bad += memlend::test::check(m, bytes, static_cast<std::uint64_t>(pass));
    verified += bytes;
  }
  std::printf("verified %llu bytes, %llu mismatches\n", static_cast<unsigned long long>(verified),
              static_cast<unsigned long long>(bad));
  return bad == 0 ? 0 : 1;
}
