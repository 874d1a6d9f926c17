// The TCP data path's wire format. Every integer is little-endian, every
// message fixed-size, so that parsing is a bounds check and a few loads —
// the parser is fuzzed (tests/rdma/fuzz_protocol.cpp).
//
//   donor → client, once:  hello    "MLDH" version nonce[16] verbs_port
//   client → donor:        request  "MLDQ" version op flags lease offset length seq tag[16]
//                          followed by `length` bytes for a write
//   donor → client:        response "MLDR" version status op seq length value value2
//                          followed by `length` bytes for a read
//
// The tag is HMAC-SHA256 (truncated to 128 bits) over the request's first 40
// bytes and the connection's nonce, keyed with the lease's secret (the pool
// secret for grant, stats and usage). With the nonce and a sequence number
// that must grow, a recorded request cannot be replayed, on this connection or
// another.
// Payloads are not authenticated, as with RDMA itself: the tag decides who may
// touch which bytes; privacy on an untrusted network is IPsec's or TLS's job.
//
// Versions: the version stays 1 while ops are only added, each with a new
// number; an op's number and fields never change. A donor that predates an
// op cannot decode it and drops the connection, so a client sends a newer op
// only for what only it does (LeaseConnection::discard, DonorClient::stats),
// never to set up a connection, which thus still works with older donors.
#pragma once

#include "rdma/common.hpp"

#include <array>
#include <cstddef>
#include <cstdint>

namespace memlend::rdma::wire {

inline constexpr std::uint8_t version = 1;
inline constexpr std::size_t hello_size = 32;
inline constexpr std::size_t request_size = 56;
inline constexpr std::size_t signed_size = 40;  // the part of a request the tag covers
inline constexpr std::size_t response_size = 40;
inline constexpr std::size_t tag_size = 16;
inline constexpr std::size_t nonce_size = 16;
// One transfer (or discard) at most; larger ones are split by the client.
// Bounds what a donor buffers, and the time it spends, for one request.
inline constexpr std::uint32_t max_transfer = 64u << 20;

enum class Op : std::uint8_t {
  read = 1,     // lease, offset, length → length bytes
  write = 2,    // lease, offset, length, then length bytes → ack
  grant = 3,    // offset = bytes wanted → value = lease id, value2 = epoch (pool secret)
  release = 4,  // lease → ack
  stats = 5,    // → value = granted bytes, value2 = pool bytes (pool secret)
  attach = 6,   // lease: this connection works for it → value = lease bytes
  // Added in version 1 after the ops above (see "Versions").
  discard = 7,  // lease, offset, length → ack; the range reads zeros, whole pool pages in it are freed
  usage = 8,    // → value = resident bytes, value2 = bytes discarded so far (pool secret)
};

// The ops signed with the pool secret rather than a lease's.
inline bool pool_op(Op op) { return op == Op::grant || op == Op::stats || op == Op::usage; }

enum class Code : std::uint8_t {
  ok = 0,
  refused = 1,  // sent before the donor drops a connection that broke a rule
  no_space = 2, // grant: the pool cannot hold that much
};

using Nonce = std::array<std::uint8_t, nonce_size>;
using Tag = std::array<std::uint8_t, tag_size>;

struct Hello {
  std::uint8_t version = wire::version;
  Nonce nonce{};
  // Where the donor's rdma_cm listener is, 0 when it serves TCP only. Not
  // always the TCP port: iWARP devices share the TCP port space.
  std::uint16_t verbs_port = 0;
};

struct Request {
  std::uint8_t version = wire::version;
  Op op = Op::read;
  std::uint16_t flags = 0;
  std::uint64_t lease = 0;
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
  std::uint64_t seq = 0;
  Tag tag{};
};

struct Response {
  std::uint8_t version = wire::version;
  Code code = Code::ok;
  Op op = Op::read;
  std::uint64_t seq = 0;
  std::uint32_t length = 0;
  std::uint64_t value = 0;
  std::uint64_t value2 = 0;
};

void encode(const Hello& h, std::uint8_t* out);
void encode(const Request& r, std::uint8_t* out);
void encode(const Response& r, std::uint8_t* out);

// Each checks magic, version, known op and code, zero flags and reserved
// fields, and length limits; none trusts anything else in the bytes.
Expected<Hello> decode_hello(const std::uint8_t* in, std::size_t size);
Expected<Request> decode_request(const std::uint8_t* in, std::size_t size);
Expected<Response> decode_response(const std::uint8_t* in, std::size_t size);

// Keyed HMAC-SHA256, with the key schedule done once per key.
class Mac {
 public:
  explicit Mac(const Secret& key);
  ~Mac();
  Mac(const Mac&) = delete;
  Mac& operator=(const Mac&) = delete;
  // The tag of an encoded request (its first signed_size bytes) on a connection.
  Tag tag(const std::uint8_t* request, const Nonce& nonce) const;

 private:
  void* ctx_;  // EVP_MAC_CTX, kept out of this header
};

// Constant-time, so that a forger learns nothing from how fast a wrong tag fails.
bool tag_equal(const Tag& a, const Tag& b);

inline void store_le64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
inline std::uint64_t load_le64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

// offset + length within [0, size), without overflow.
bool in_bounds(std::uint64_t offset, std::uint64_t length, std::uint64_t size);

}  // namespace memlend::rdma::wire
