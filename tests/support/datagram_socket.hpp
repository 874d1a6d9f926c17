// What systemd listens on for a service's notifications and journald for
// its log entries: an AF_UNIX datagram socket bound to a path. A test binds
// one where memlend will send, and reads what arrives, one datagram each.
#pragma once

#include <chrono>
#include <string>

namespace memlend::test {

class DatagramSocket {
 public:
  // Binds `path`, which must not exist yet; throws when it cannot.
  explicit DatagramSocket(const std::string& path);
  ~DatagramSocket();
  DatagramSocket(const DatagramSocket&) = delete;
  DatagramSocket& operator=(const DatagramSocket&) = delete;

  // The next datagram, or "" when none came within `timeout`.
  std::string next(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
};

}  // namespace memlend::test
