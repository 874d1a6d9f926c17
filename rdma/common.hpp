// Small vocabulary shared by every part of the data path: status values,
// timeouts, addresses, secrets and owned file descriptors. Plain C++, no CAF,
// so that the actors, the CLI, the tests and the fuzzer can all use it.
#pragma once

#include "core/expected.hpp"
#include "core/lease_access.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace memlend::rdma {

// Operations with nothing to return.
using Status = Expected<void>;
inline Status ok() { return {}; }

// "what failed: strerror(err)" — one line, for Error::message.
Error sys_error(const std::string& what, int err);

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

// Every blocking operation of the data path is bounded by one of these: a
// donor that does not answer within `io` is dead for that region, so that no
// VM and no actor waits forever on a host that is gone.
struct Timeouts {
  Millis connect{5000};
  Millis io{5000};
  // Not a timeout: how long a waiting side polls before it sleeps. Waking a
  // sleeping thread costs tens of µs on a virtual machine's idle CPU, more
  // than a 4 KiB transfer on loopback. It costs a core only while faults
  // keep coming; 0 never spins.
  std::chrono::microseconds busy_poll{200};
};

enum class TransportKind { automatic, verbs, tcp };
std::optional<TransportKind> parse_transport_kind(std::string_view text);
const char* transport_name(TransportKind kind);

// "host:port", "[v6]:port" or ":port" (all addresses). Port 0 asks the
// kernel for a free port, which tests read back from the server.
struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
};
Expected<Endpoint> parse_endpoint(const std::string& text);
std::string to_string(const Endpoint& e);

// A 256-bit key. The pool secret authenticates requests for new leases; each
// lease has its own secret derived from it, so a recipient holds the key of
// its lease only and a replayed or guessed lease id is worth nothing.
using Secret = std::array<std::uint8_t, secret_bytes>;

// The file's bytes, hashed to 256 bits (any passphrase length works). An
// empty or unreadable file is an error rather than a silently weak key.
Expected<Secret> load_secret_file(const std::string& path);
// The same key from bytes already read (and checked) by the caller.
Secret secret_from_text(std::string_view text);
Secret lease_secret(const Secret& pool_secret, std::uint64_t lease_id, std::uint64_t epoch);
Secret random_secret();

// Owns one file descriptor; closes it once.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

}  // namespace memlend::rdma
