#include "tests/support/http_get.hpp"

#include <arpa/inet.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <chrono>
#include <cstring>
#include <netinet/in.h>
#include <poll.h>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

namespace memlend::test {

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

HttpResponse http_get(const std::string& host, std::uint16_t port, const std::string& target, double timeout_s) {
  HttpResponse r;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  auto left_ms = [&] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<long long>(0, left.count()));
  };
  Fd s{socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
  if (s.fd < 0) return r.error = std::strerror(errno), r;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) return r.error = "not an IPv4 address: " + host, r;
  if (connect(s.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS)
    return r.error = std::string("connect: ") + std::strerror(errno), r;
  pollfd p{s.fd, POLLOUT, 0};
  if (poll(&p, 1, left_ms()) != 1) return r.error = "connect: timed out", r;
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return r.error = std::string("connect: ") + std::strerror(err), r;

  std::string request = "GET " + target + " HTTP/1.0\r\nHost: " + host + ":" + std::to_string(port) +
                        "\r\nAccept: */*\r\nConnection: close\r\n\r\n";
  std::size_t sent = 0;
  while (sent < request.size()) {
    pollfd w{s.fd, POLLOUT, 0};
    if (poll(&w, 1, left_ms()) != 1) return r.error = "send: timed out", r;
    ssize_t n = send(s.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN) return r.error = std::string("send: ") + std::strerror(errno), r;
    if (n > 0) sent += static_cast<std::size_t>(n);
  }
  std::string raw;
  char buf[65536];
  for (;;) {
    pollfd rd{s.fd, POLLIN, 0};
    if (poll(&rd, 1, left_ms()) != 1) return r.error = "receive: timed out", r;
    ssize_t n = recv(s.fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0 && errno != EAGAIN) return r.error = std::string("receive: ") + std::strerror(errno), r;
    if (n > 0) raw.append(buf, static_cast<std::size_t>(n));
  }
  auto end = raw.find("\r\n\r\n");
  if (raw.compare(0, 5, "HTTP/") != 0 || end == std::string::npos) return r.error = "not an HTTP answer", r;
  r.headers = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  auto space = r.headers.find(' ');
  r.status = std::atoi(r.headers.c_str() + space + 1);
  return r;
}

std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::uint16_t free_loopback_port() {
  Fd s{socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s.fd < 0 || bind(s.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
    throw std::runtime_error("free_loopback_port: bind");
  socklen_t len = sizeof sa;
  getsockname(s.fd, reinterpret_cast<sockaddr*>(&sa), &len);
  return ntohs(sa.sin_port);
}

}  // namespace memlend::test
