// The donor's side of one TCP connection, apart from the socket, so that the
// fuzzer drives exactly the code a donor runs on bytes from the network.
#pragma once

#include "rdma/common.hpp"
#include "rdma/protocol.hpp"

#include <set>
#include <sys/uio.h>

namespace memlend::rdma {

class DonorPool;

// A byte stream with bounded waits (a socket, or memory in the fuzzer).
class Channel {
 public:
  virtual ~Channel() = default;
  // Exactly n bytes, or an error (end of stream, timeout, interrupted).
  virtual Status read_exact(void* dst, std::size_t n) = 0;
  virtual Status write_all(const iovec* iov, int count) = 0;
};

class DonorSession {
 public:
  DonorSession(DonorPool& pool, const wire::Nonce& nonce) : pool_(pool), nonce_(nonce) {}

  // Reads and carries out one request. An error means the peer broke a rule
  // or went away: the caller drops the connection, after the refusal (if
  // any) has been sent.
  Status serve_one(Channel& channel);

  // Leases this connection reads and writes (cut when revoked), leases it
  // was granted, and leases it released: for the server's orphan accounting.
  const std::set<std::uint64_t>& attached() const { return attached_; }
  const std::set<std::uint64_t>& granted() const { return granted_; }
  const std::set<std::uint64_t>& released() const { return released_; }

 private:
  Status refuse(Channel& channel, const wire::Request& r, const std::string& why);
  Status respond(Channel& channel, const wire::Request& r, wire::Code code, std::uint64_t value = 0,
                 std::uint64_t value2 = 0, const void* payload = nullptr, std::uint32_t length = 0);

  DonorPool& pool_;
  wire::Nonce nonce_;
  std::uint64_t last_seq_ = 0;
  std::set<std::uint64_t> attached_;
  std::set<std::uint64_t> granted_;
  std::set<std::uint64_t> released_;
};

}  // namespace memlend::rdma
