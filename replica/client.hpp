// A client of a dqlite node over TCP, speaking its wire protocol (see
// wire.hpp): the node API Debian's libdqlite ships has no client of its own.
//
// One request at a time, each bounded by a deadline (ClientOptions::timeout) for all
// its bytes and by a size (ClientOptions::max_message per message, max_result for a
// query's rows in all): a peer that is slow, silent or sends garbage costs a
// timeout or an error, never a hang or an unbounded allocation. After any
// such error the connection is spent (its stream may be mid-message), and
// every later call says so: connect again.
//
// Errors: a FAILURE response is `refused`, except "not leader" and
// "leadership lost", which are `unavailable` (ask the leader, see
// connect_leader); failure_code() then holds dqlite's code. Whether a write
// that failed with "leadership lost" was committed is unknown: the caller
// decides whether to retry, inside a transaction that can tell.
#pragma once

#include "core/expected.hpp"
#include "replica/tls.hpp"
#include "replica/wire.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace memlend::replica {

struct ClientOptions {
  std::chrono::milliseconds timeout{5000};
  std::size_t max_message = std::size_t{8} << 20;
  std::size_t max_result = std::size_t{64} << 20;
  // The cluster's TLS (replica/tls.hpp), which a member's address speaks when
  // it was started with it; null: plain TCP. The handshake counts against
  // `timeout`; a peer whose certificate the cluster's CA did not sign is
  // refused before any request.
  std::shared_ptr<const Tls> tls;
};

class Client {
 public:
  // Connects to "host:port", sends the protocol version and registers as a
  // client (CLIENT, answered by WELCOME).
  static Expected<Client> connect(const std::string& address, ClientOptions limits = {});
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;
  ~Client();

  const std::string& address() const;
  // Whom this node believes to be the leader; id 0 and "" when it knows of
  // none (an election under way, or a node that is not a voter).
  Expected<NodeInfo> leader();
  // Membership, on the leader: a new node joins as a spare; assign() gives it
  // its role.
  Expected<void> add(std::uint64_t id, const std::string& address);
  Expected<void> assign(std::uint64_t id, Role role);
  Expected<void> remove(std::uint64_t id);
  Expected<std::vector<NodeInfo>> cluster();

  // One database per connection (dqlite's rule); created on first open.
  Expected<void> open(const std::string& name);
  // SQL, on the leader: exec() runs every statement of `sql` (the parameters
  // bind to the first), query() one statement and returns all its rows.
  Expected<ExecResult> exec(const std::string& sql, const std::vector<Value>& params = {});
  Expected<Rows> query(const std::string& sql, const std::vector<Value>& params = {});

  // The code of the last FAILURE response, 0 when the last call got none.
  std::uint64_t failure_code() const;
  bool spent() const;

 private:
  struct State;
  explicit Client(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

// Finds the leader through any of `addresses` and connects to it, retrying
// (an election may be under way) until `within` has passed; the returned
// client has confirmed with the leader itself that it leads, and has `db`
// open when `db` is not empty.
Expected<Client> connect_leader(const std::vector<std::string>& addresses, const std::string& db,
                                std::chrono::milliseconds within, ClientOptions limits = {});

}  // namespace memlend::replica
