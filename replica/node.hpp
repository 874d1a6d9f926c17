// One member of a dqlite cluster embedded in this process: Raft and the
// replicated SQLite behind one TCP address, which serves both the other
// members' Raft traffic and clients (replica/client.hpp). Given the cluster's
// TLS files, that address is a TLS front to a local socket, and the member's
// Raft connections out go over TLS too (replica/tls.hpp); else it is plain
// TCP, which only tests of the engine itself use.
//
// A node with id 1 and an empty data directory bootstraps a cluster of one
// (dqlite's rule); any other starts empty and waits for the leader to add it
// (Client::add, then Client::assign). Started by start(), stopped by its
// destructor; the data directory holds its Raft log and snapshots and is what
// it restarts from. Starting a node makes the process ignore SIGPIPE (see
// node.cpp).
#pragma once

#include "core/expected.hpp"
#include "replica/tls.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

struct dqlite_node;

namespace memlend::replica {

struct MemberDialer;  // node.cpp

struct NodeConfig {
  std::uint64_t id = 0;         // unique in the cluster, never reused; 1 bootstraps
  std::string address;          // host:port, as the other members and clients reach it
  std::string data_dir;         // created (0700) when missing
  // The round trip dqlite plans for: Raft's heartbeat is 1.5 times it and its
  // election timeout 15 times it. Unset: dqlite's own (500 ms and 3 s).
  std::optional<std::chrono::milliseconds> network_latency;
  std::shared_ptr<const Tls> tls;  // null: plain TCP
};

class Node {
 public:
  static Expected<std::unique_ptr<Node>> start(const NodeConfig& config);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const NodeConfig& config() const { return config_; }
  // Stops serving and leaves the cluster's view as a member that is down;
  // the destructor calls it when it was not called.
  Expected<void> stop();

 private:
  explicit Node(NodeConfig config);
  NodeConfig config_;
  dqlite_node* node_ = nullptr;
  bool running_ = false;
  std::unique_ptr<MemberDialer> dialer_;  // outlives the node: its connections go through it
  std::unique_ptr<Front> front_;
};

// A cluster that lost its quorum for good (two voters of three gone with
// their disks) commits nothing more, and Raft cannot tell a dead voter from
// a slow one. This makes the member whose log is in `config.data_dir` (id
// and address as it ran) the one voter of the cluster, keeping its log, as
// dqlite_node_recover_ext does; nothing else of the old configuration stays.
// Its node must not be running: run it on a stopped member, then start it,
// and have the other nodes join it anew. An error when the directory holds
// no member's log.
Expected<void> recover_alone(const NodeConfig& config);

}  // namespace memlend::replica
