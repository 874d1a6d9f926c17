#include "rdma/handoff.hpp"

#include "rdma/protocol.hpp"

#include <cerrno>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace memlend::rdma {

namespace {

constexpr char magic[4] = {'M', 'L', 'R', 'H'};
constexpr std::uint8_t handoff_version = 1;
constexpr std::size_t message_size = 32;

// One message: the description and room for the descriptors.
template <std::size_t Fds>
struct Message {
  std::uint8_t body[message_size] = {};
  alignas(cmsghdr) char control[CMSG_SPACE(Fds * sizeof(int))] = {};
  iovec iov{body, sizeof body};
  msghdr header() {
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof control;
    return m;
  }
};

}  // namespace

Status send_region(int unix_socket, int uffd, int memfd, const RegionHandoff& region) {
  Message<2> msg;
  std::uint8_t* body = msg.body;
  std::memcpy(body, magic, 4);
  body[4] = handoff_version;
  wire::store_le64(body + 8, region.base);
  wire::store_le64(body + 16, region.bytes);
  wire::store_le64(body + 24, region.memfd_offset);
  msghdr m = msg.header();
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(2 * sizeof(int));
  int fds[2] = {uffd, memfd};
  std::memcpy(CMSG_DATA(c), fds, sizeof fds);
  for (;;) {
    ssize_t n = ::sendmsg(unix_socket, &m, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("handing the region over", errno);
    if (static_cast<std::size_t>(n) != message_size) return Error{"handing the region over: short send"};
    return ok();
  }
}

Expected<HandedRegion> receive_region(UniqueFd unix_socket, Millis timeout) {
  pollfd p{unix_socket.get(), POLLIN, 0};
  int ready = 0;
  do ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  while (ready < 0 && errno == EINTR);
  if (ready == 0) return Error{"region handoff: nothing received within the timeout"};
  if (ready < 0) return sys_error("region handoff", errno);

  // Room for more descriptors than expected, so that extra ones are seen
  // (and closed) rather than silently truncated.
  Message<4> msg;
  const std::uint8_t* body = msg.body;
  msghdr m = msg.header();
  ssize_t n = ::recvmsg(unix_socket.get(), &m, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  if (n < 0) return sys_error("region handoff", errno);

  // Take ownership of whatever descriptors came, before any check can bail
  // out, so that none leaks.
  std::vector<UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.emplace_back(fd);
    }
  }
  if (m.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) return Error{"region handoff: message truncated"};
  if (static_cast<std::size_t>(n) != message_size) return Error{"region handoff: short message"};
  if (std::memcmp(body, magic, 4) != 0 || body[4] != handoff_version)
    return Error{"region handoff: not a memlend region description (or another version)"};
  if (fds.size() != 2) return Error{"region handoff: expected a userfaultfd and a memfd, got " + std::to_string(fds.size()) + " descriptors"};
  HandedRegion h;
  h.uffd = std::move(fds[0]);
  h.memfd = std::move(fds[1]);
  h.region.base = wire::load_le64(body + 8);
  h.region.bytes = wire::load_le64(body + 16);
  h.region.memfd_offset = wire::load_le64(body + 24);
  h.peer = std::move(unix_socket);
  long page = ::sysconf(_SC_PAGESIZE);
  if (h.region.bytes == 0 || h.region.base % page || h.region.bytes % page || h.region.memfd_offset % page)
    return Error{"region handoff: base, length and offset must be non-zero multiples of the page size"};
  return h;
}

}  // namespace memlend::rdma
