#include "replica/node.hpp"

#include "rdma/net.hpp"
#include "replica/wire.hpp"

// dqlite.h declares C functions with no extern "C" of its own.
extern "C" {
#include <dqlite.h>
}
#include <fcntl.h>
#include <sys/stat.h>

#include <csignal>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace memlend::replica {

// What the connect function dials with.
struct MemberDialer {
  std::shared_ptr<const Tls> tls;
  Pumps pumps;
};

namespace {

Error node_error(dqlite_node* node, const std::string& what, int rc) {
  std::string detail = node ? dqlite_node_errmsg(node) : "";
  return Error{"dqlite node: " + what + " failed (" + std::to_string(rc) + ")" +
                   (detail.empty() ? "" : ": " + one_line(detail)),
               ErrorCode::failed};
}

// dqlite writes its handshake to a new connection before handing it to
// libuv, with plain write(): the socket it is given must block.
bool make_blocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0;
}

// dqlite's connect function, on a worker thread of its loop: a member's
// Raft connection over TLS, handed to dqlite as a local socket. Bounded, so
// that a member whose host vanished holds the worker a moment only.
int dial_member(void* arg, const char* address, int* fd) {
  auto* dialer = static_cast<MemberDialer*>(arg);
  auto dialed = dial(*dialer->tls, address, rdma::Clock::now() + std::chrono::seconds(2));
  if (!dialed || !make_blocking(dialed->local.get())) return DQLITE_ERROR;
  *fd = dialed->local.release();
  dialer->pumps.add(std::move(dialed->pump));
  return 0;
}

// The same for a node without TLS: plain TCP, but with TCP_NODELAY, which
// dqlite's own connect function leaves off. Without it an AppendEntries
// waited, under Nagle's algorithm, for the follower's delayed ACK: commits
// had a p99 of 44 ms on loopback, stalls of the delayed-ACK timer's 40 ms
// (bench_replica; 4.8 ms with it).
int dial_member_plain(void*, const char* address, int* fd) {
  auto dialed = rdma::net::connect_tcp(address, std::chrono::seconds(2));
  if (!dialed || !make_blocking(dialed->get())) return DQLITE_ERROR;
  *fd = dialed->release();
  return 0;
}

}  // namespace

Node::Node(NodeConfig config) : config_(std::move(config)) {}

Expected<std::unique_ptr<Node>> Node::start(const NodeConfig& config) {
  if (config.id == 0) return Error{"dqlite node: id 0 is not a node id", ErrorCode::invalid_input};
  if (config.address.empty() || config.data_dir.empty())
    return Error{"dqlite node: an address and a data directory are needed", ErrorCode::invalid_input};
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) return Error{"dqlite node: " + one_line(config.data_dir) + ": " + ec.message(), ErrorCode::io};
  // Raft's log is the cluster's store: nobody else reads it.
  ::chmod(config.data_dir.c_str(), 0700);

  // Raft's libuv writes to sockets without MSG_NOSIGNAL: the first write to
  // a member that just died raised SIGPIPE, whose default disposition killed
  // the surviving members in the middle of the election that was to replace
  // it (seen in tests/replica). A process that embeds a node ignores it.
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) ::signal(SIGPIPE, SIG_IGN);

  std::unique_ptr<Node> n(new Node(config));
  int rc = dqlite_node_create(config.id, config.address.c_str(), config.data_dir.c_str(), &n->node_);
  if (rc != 0) return node_error(n->node_, "create", rc);
  // Behind TLS, dqlite listens where only this host reaches it (the kernel
  // picks the name) and the front takes the member's address.
  std::string bind = config.tls ? "@" : config.address;
  if ((rc = dqlite_node_set_bind_address(n->node_, bind.c_str())) != 0)
    return node_error(n->node_, "bind " + config.address, rc);
  if (!config.tls && (rc = dqlite_node_set_connect_func(n->node_, dial_member_plain, nullptr)) != 0)
    return node_error(n->node_, "set the connect function", rc);
  if (config.tls) {
    n->dialer_ = std::make_unique<MemberDialer>();
    n->dialer_->tls = config.tls;
    if ((rc = dqlite_node_set_connect_func(n->node_, dial_member, n->dialer_.get())) != 0)
      return node_error(n->node_, "set the connect function", rc);
    const char* local = dqlite_node_get_bind_address(n->node_);
    if (!local) return node_error(n->node_, "bind a local socket", -1);
    auto front = Front::start(config.tls, config.address, local);
    if (!front)
      return Error{"dqlite node: listen on " + config.address + ": " + front.error().message, front.error().code};
    n->front_ = std::move(*front);
  }
  if (config.network_latency) {
    auto ms = static_cast<unsigned>(config.network_latency->count());
    if ((rc = dqlite_node_set_network_latency_ms(n->node_, ms)) != 0)
      return node_error(n->node_, "set network latency", rc);
  }
  // Starting loads the log, and a damaged log fails here: the operator is
  // told which directory holds it.
  if ((rc = dqlite_node_start(n->node_)) != 0)
    return node_error(n->node_, "start from " + one_line(config.data_dir), rc);
  n->running_ = true;
  return n;
}

Expected<void> Node::stop() {
  if (!running_) return {};
  running_ = false;
  int rc = dqlite_node_stop(node_);
  // dqlite closed its side of every connection: what the pumps still carry
  // has nobody to read it.
  front_.reset();
  if (dialer_) dialer_->pumps.clear();
  if (rc != 0) return node_error(node_, "stop", rc);
  return {};
}

Node::~Node() {
  (void)stop();
  front_.reset();
  if (node_) dqlite_node_destroy(node_);
}

Expected<void> recover_alone(const NodeConfig& config) {
  if (config.id == 0) return Error{"dqlite node: id 0 is not a node id", ErrorCode::invalid_input};
  // Raft keeps its term and vote in metadata1 and metadata2: a directory
  // without either never held a member, and recovering it would make an
  // empty cluster that forgot the store.
  std::error_code ec;
  bool has_log = std::filesystem::exists(config.data_dir + "/metadata1", ec) ||
                 std::filesystem::exists(config.data_dir + "/metadata2", ec);
  if (!has_log)
    return Error{one_line(config.data_dir) + " holds no member's log (no Raft metadata)", ErrorCode::invalid_input};
  dqlite_node* node = nullptr;
  int rc = dqlite_node_create(config.id, config.address.c_str(), config.data_dir.c_str(), &node);
  if (rc != 0) {
    Error e = node_error(node, "create", rc);
    if (node) dqlite_node_destroy(node);
    return e;
  }
  dqlite_node_info_ext self{};
  self.size = sizeof self;
  self.id = config.id;
  self.address = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(config.address.c_str()));
  self.dqlite_role = static_cast<std::uint64_t>(Role::voter);
  rc = dqlite_node_recover_ext(node, &self, 1);
  Error e = rc == 0 ? Error{} : node_error(node, "recover", rc);
  dqlite_node_destroy(node);
  if (rc != 0) return e;
  return {};
}

}  // namespace memlend::replica
