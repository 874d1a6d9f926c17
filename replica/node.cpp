#include "replica/node.hpp"

// dqlite.h declares C functions with no extern "C" of its own.
extern "C" {
#include <dqlite.h>
}
#include <sys/stat.h>

#include <csignal>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace memlend::replica {

namespace {

Error node_error(dqlite_node* node, const std::string& what, int rc) {
  std::string detail = node ? dqlite_node_errmsg(node) : "";
  return Error{"dqlite node: " + what + " failed (" + std::to_string(rc) + ")" +
                   (detail.empty() ? "" : ": " + one_line(detail)),
               ErrorCode::failed};
}

}  // namespace

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

  dqlite_node* node = nullptr;
  int rc = dqlite_node_create(config.id, config.address.c_str(), config.data_dir.c_str(), &node);
  if (rc != 0) {
    Error e = node_error(node, "create", rc);
    if (node) dqlite_node_destroy(node);
    return e;
  }
  auto fail = [&](const std::string& what, int code) {
    Error e = node_error(node, what, code);
    dqlite_node_destroy(node);
    return e;
  };
  if ((rc = dqlite_node_set_bind_address(node, config.address.c_str())) != 0) return fail("bind " + config.address, rc);
  if (config.network_latency) {
    auto ms = static_cast<unsigned>(config.network_latency->count());
    if ((rc = dqlite_node_set_network_latency_ms(node, ms)) != 0) return fail("set network latency", rc);
  }
  if ((rc = dqlite_node_start(node)) != 0) return fail("start", rc);
  return std::unique_ptr<Node>(new Node(config, node));
}

Expected<void> Node::stop() {
  if (!running_) return {};
  running_ = false;
  if (int rc = dqlite_node_stop(node_); rc != 0) return node_error(node_, "stop", rc);
  return {};
}

Node::~Node() {
  (void)stop();
  dqlite_node_destroy(node_);
}

}  // namespace memlend::replica
