// Socket plumbing for the TCP data path, and for the replica's dqlite client:
// non-blocking sockets whose every wait is a poll() with a deadline, so that a
// dead peer costs at most a timeout and shutdown() from another thread wakes
// anyone. Errors carry no code, as the data path has always passed them on: a
// caller that must tell a timeout from a failure asks whether its deadline
// has passed.
#pragma once

#include "rdma/common.hpp"
#include "rdma/session.hpp"

#include <sys/uio.h>

namespace memlend::rdma::net {

// The timeout starts after the name lookup, which it does not bound; a
// deadline bounds both.
Expected<UniqueFd> connect_tcp(const std::string& address, Millis timeout);
Expected<UniqueFd> connect_tcp(const std::string& address, Clock::time_point deadline);
// Binds and listens; port 0 picks a free one (see local_address).
Expected<UniqueFd> listen_tcp(const std::string& address);
std::string local_address(int fd);
std::string peer_address(int fd);  // "?" once the peer has gone
void tune(int fd);  // TCP_NODELAY, keepalive that notices a vanished peer

// A timeout bounds one call; a deadline can bound several, such as a request
// and its answer together. With `busy_poll` > 0, spins on the socket that long
// before sleeping in poll().
Status recv_exact(int fd, void* dst, std::size_t n, Clock::time_point deadline,
                  std::chrono::microseconds busy_poll = {});
Status send_all(int fd, const iovec* iov, int count, Clock::time_point deadline);
inline Status recv_exact(int fd, void* dst, std::size_t n, Millis timeout, std::chrono::microseconds busy_poll = {}) {
  return recv_exact(fd, dst, n, Clock::now() + timeout, busy_poll);
}
inline Status send_all(int fd, const iovec* iov, int count, Millis timeout) {
  return send_all(fd, iov, count, Clock::now() + timeout);
}
// Waits for the next message until `deadline` (by default none); ends when
// the peer closes or the socket is shut down.
Status await_readable(int fd, std::chrono::microseconds busy_poll = {},
                      Clock::time_point deadline = Clock::time_point::max());

// A connected socket as the donor session's channel.
class SocketChannel : public Channel {
 public:
  SocketChannel(int fd, Millis timeout) : fd_(fd), timeout_(timeout) {}
  Status read_exact(void* dst, std::size_t n) override { return recv_exact(fd_, dst, n, timeout_); }
  Status write_all(const iovec* iov, int count) override { return send_all(fd_, iov, count, timeout_); }

 private:
  int fd_;
  Millis timeout_;
};

}  // namespace memlend::rdma::net
