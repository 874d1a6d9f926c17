// dqlite's wire protocol (protocol version 1, message schema 0, as dqlite
// 1.11 speaks it) as bytes: requests encoded, responses decoded. No I/O here,
// so that the decoder can be fed anything (tests/replica/fuzz_wire.cpp).
//
// Every message is an 8-byte header [body words:4][type:1][schema:1][0:2]
// and a body of 8-byte words; integers are little-endian, text is
// NUL-terminated and padded to a word, a blob is [length:8][bytes, padded].
// A decoder reads only inside the body it is given and fails with
// invalid_input on anything short, unterminated, misaligned or of an unknown
// type: the bytes come from the network.
#pragma once

#include "core/expected.hpp"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace memlend::replica {

constexpr std::uint64_t protocol_version = 1;

enum class Request : std::uint8_t {
  leader = 0,
  client = 1,
  open = 3,
  exec_sql = 8,
  query_sql = 9,
  add = 12,
  assign = 13,
  remove = 14,
  cluster = 16,
};

enum class Response : std::uint8_t {
  failure = 0,
  server = 1,
  welcome = 2,
  servers = 3,
  db = 4,
  result = 6,
  rows = 7,
  empty = 8,
};

enum class Role : std::uint64_t { voter = 0, standby = 1, spare = 2 };
std::string_view to_string(Role role);

// SQLite's extended codes dqlite answers with when the node asked is not, or
// stopped being during the request, the leader: ask the leader instead.
constexpr std::uint64_t not_leader_code = 10250;        // SQLITE_IOERR_NOT_LEADER
constexpr std::uint64_t leadership_lost_code = 10506;   // SQLITE_IOERR_LEADERSHIP_LOST

struct Blob {
  std::vector<std::uint8_t> bytes;
  bool operator==(const Blob& o) const { return bytes == o.bytes; }
};
struct Null {
  bool operator==(const Null&) const { return true; }
};
// A parameter or a column's value. dqlite's time and boolean columns arrive
// as the integer or text SQLite stores.
using Value = std::variant<Null, std::int64_t, double, std::string, Blob>;

struct NodeInfo {
  std::uint64_t id = 0;  // 0: none (no leader known)
  std::string address;
  Role role = Role::voter;
};

struct Failure {
  std::uint64_t code = 0;  // SQLite's (extended) result code, or dqlite's
  std::string message;
};

struct ExecResult {
  std::uint64_t last_insert_id = 0;
  std::uint64_t rows_affected = 0;
};

struct Rows {
  std::vector<std::string> columns;
  std::vector<std::vector<Value>> rows;
};

struct Header {
  std::uint32_t words = 0;
  std::uint8_t type = 0;
  std::uint8_t schema = 0;
  std::size_t body_bytes() const { return static_cast<std::size_t>(words) * 8; }
};
constexpr std::size_t header_bytes = 8;

// A request's body, field by field in the order its schema lists them.
class Body {
 public:
  Body& u64(std::uint64_t v);
  // invalid_input when the text holds a NUL, which the protocol cannot carry.
  Body& text(std::string_view s);
  // Parameters (at most 255): a count, a type code each, then the values.
  Body& params(const std::vector<Value>& values);
  // The first problem met while building, if any.
  const Expected<void>& status() const { return status_; }
  // Header and body, ready to send.
  std::vector<std::uint8_t> message(Request type) const;

 private:
  void pad();
  std::vector<std::uint8_t> bytes_;
  Expected<void> status_;
};

Expected<Header> decode_header(const std::uint8_t* p, std::size_t n);

Expected<Failure> decode_failure(const std::uint8_t* p, std::size_t n);
Expected<NodeInfo> decode_server(const std::uint8_t* p, std::size_t n);
Expected<std::uint64_t> decode_welcome(const std::uint8_t* p, std::size_t n);  // heartbeat timeout, ms
Expected<std::uint32_t> decode_db(const std::uint8_t* p, std::size_t n);
Expected<ExecResult> decode_result(const std::uint8_t* p, std::size_t n);
Expected<void> decode_empty(const std::uint8_t* p, std::size_t n);
// CLUSTER's answer in format 1 (id, address, role).
Expected<std::vector<NodeInfo>> decode_servers(const std::uint8_t* p, std::size_t n);
// One ROWS message: its columns and rows appended to `into` (whose columns
// must match when it already has some). true: more ROWS messages follow.
Expected<bool> decode_rows(const std::uint8_t* p, std::size_t n, Rows& into);

}  // namespace memlend::replica
