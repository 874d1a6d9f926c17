#include "rdma/net.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

namespace memlend::rdma::net {

namespace {

// Rounded up, so that a wait that times out has really reached its deadline.
int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<Millis>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

// Waits for `events` until the deadline; a hang-up counts as ready so that
// the following recv/send reports it.
Status wait_for(int fd, short events, Clock::time_point deadline, const char* what) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n > 0) return ok();
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error(what, errno);
    return Error{std::string(what) + ": timed out"};
  }
}

Expected<addrinfo*> resolve(const Endpoint& e, bool passive) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = AF_UNSPEC;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* res = nullptr;
  std::string port = std::to_string(e.port);
  int rc = ::getaddrinfo(e.host.empty() ? nullptr : e.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return Error{"address " + to_string(e) + ": " + ::gai_strerror(rc)};
  return res;
}

}  // namespace

void tune(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  // A peer whose host vanished (no FIN, no RST) is noticed within ~25 s.
  int idle = 10, interval = 5, count = 3;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

namespace {

// `deadline_after_lookup` is asked for once the name is resolved.
template <class Deadline>
Expected<UniqueFd> dial(const std::string& address, Deadline deadline_after_lookup) {
  auto ep = parse_endpoint(address);
  if (!ep) return ep.error();
  if (ep->host.empty()) ep->host = "127.0.0.1";
  auto res = resolve(*ep, false);
  if (!res) return res.error();
  auto deadline = deadline_after_lookup();
  Error last{"connect " + address + ": no usable address"};
  for (addrinfo* ai = *res; ai; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      last = sys_error("connect " + address, errno);
      continue;
    }
    if (::connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = sys_error("connect " + address, errno);
      continue;
    }
    if (auto w = wait_for(fd.get(), POLLOUT, deadline, ("connect " + address).c_str()); !w) {
      last = w.error();
      continue;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      last = sys_error("connect " + address, err);
      continue;
    }
    tune(fd.get());
    ::freeaddrinfo(*res);
    return fd;
  }
  ::freeaddrinfo(*res);
  return last;
}

}  // namespace

Expected<UniqueFd> connect_tcp(const std::string& address, Millis timeout) {
  return dial(address, [timeout] { return Clock::now() + timeout; });
}

Expected<UniqueFd> connect_tcp(const std::string& address, Clock::time_point deadline) {
  return dial(address, [deadline] { return deadline; });
}

Expected<UniqueFd> listen_tcp(const std::string& address) {
  auto ep = parse_endpoint(address);
  if (!ep) return ep.error();
  auto res = resolve(*ep, true);
  if (!res) return res.error();
  Error last{"listen " + address + ": no usable address"};
  for (addrinfo* ai = *res; ai; ai = ai->ai_next) {
    UniqueFd fd(::socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) continue;
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // The kernel's largest queue: a burst of connections (many recipients at
    // once, or a flood) waits there for the acceptor rather than having its
    // SYNs dropped and retried a second later.
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd.get(), SOMAXCONN) != 0) {
      last = sys_error("listen " + address, errno);
      continue;
    }
    ::freeaddrinfo(*res);
    return fd;
  }
  ::freeaddrinfo(*res);
  return last;
}

namespace {

std::string name_of(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  std::uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  }
  return to_string(Endpoint{host, port});
}

}  // namespace

std::string local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return name_of(ss);
}

std::string peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return name_of(ss);
}

Status recv_exact(int fd, void* dst, std::size_t n, Clock::time_point deadline, std::chrono::microseconds busy_poll) {
  auto* p = static_cast<std::uint8_t*>(dst);
  auto spin_until = Clock::now() + busy_poll;
  while (n > 0) {
    ssize_t k = ::recv(fd, p, n, MSG_DONTWAIT);
    if (k > 0) {
      p += k;
      n -= static_cast<std::size_t>(k);
      continue;
    }
    if (k == 0) return Error{"connection closed by the peer"};
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return sys_error("receive", errno);
    if (busy_poll.count() > 0 && Clock::now() < spin_until) continue;
    if (auto w = wait_for(fd, POLLIN, deadline, "receive"); !w) return w;
  }
  return ok();
}

Status send_all(int fd, const iovec* iov, int count, Clock::time_point deadline) {
  std::vector<iovec> left(iov, iov + count);
  std::size_t first = 0;
  while (first < left.size()) {
    msghdr m{};
    m.msg_iov = left.data() + first;
    m.msg_iovlen = left.size() - first;
    ssize_t k = ::sendmsg(fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return sys_error("send", errno);
      if (auto w = wait_for(fd, POLLOUT, deadline, "send"); !w) return w;
      continue;
    }
    auto sent = static_cast<std::size_t>(k);
    while (first < left.size() && sent >= left[first].iov_len) sent -= left[first++].iov_len;
    if (first < left.size()) {
      left[first].iov_base = static_cast<std::uint8_t*>(left[first].iov_base) + sent;
      left[first].iov_len -= sent;
    }
  }
  return ok();
}

Status await_readable(int fd, std::chrono::microseconds busy_poll, Clock::time_point deadline) {
  if (deadline != Clock::time_point::max()) return wait_for(fd, POLLIN, deadline, "wait");
  auto spin_until = Clock::now() + busy_poll;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    bool spinning = busy_poll.count() > 0 && Clock::now() < spin_until;
    int n = ::poll(&p, 1, spinning ? 0 : -1);
    if (n > 0) return ok();
    if (n < 0 && errno != EINTR) return sys_error("wait", errno);
  }
}

}  // namespace memlend::rdma::net
