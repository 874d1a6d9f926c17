#include "tests/support/datagram_socket.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <stdexcept>
#include <vector>

namespace memlend::test {

DatagramSocket::DatagramSocket(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) throw std::runtime_error("DatagramSocket: path too long: " + path);
  std::copy(path.begin(), path.end(), a.sun_path);
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("DatagramSocket: socket: ") + std::strerror(errno));
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::string why = std::strerror(errno);
    ::close(fd_);
    throw std::runtime_error("DatagramSocket: bind " + path + ": " + why);
  }
}

DatagramSocket::~DatagramSocket() { ::close(fd_); }

std::string DatagramSocket::next(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return {};
  // A journal entry may be long: a datagram is at most this here.
  std::vector<char> buf(1 << 20);
  ssize_t n = ::recv(fd_, buf.data(), buf.size(), 0);
  return n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : std::string();
}

}  // namespace memlend::test
