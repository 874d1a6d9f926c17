// Three dqlite nodes on loopback (voters; more are standbys), each in a
// process of its own (replica_node_host), so that the leader can die by
// kill -9 as a node would.
#pragma once

#include <boost/test/unit_test.hpp>

#include "replica/client.hpp"
#include "tests/support/child.hpp"
#include "tests/support/http_get.hpp"

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace memlend::test::replica_cluster {

using namespace memlend::replica;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Raft's election timeout is 15 times this (300 ms): short, and still far
// above a loaded machine's loopback round trip.
constexpr const char* latency_ms = "20";
// How long a new leader may take: many election timeouts, for a machine
// that runs other builds beside the test.
constexpr milliseconds election_bound = seconds(20);
constexpr const char* db = "memlend";

template <class T>
T must(Expected<T> e, const char* what) {
  BOOST_TEST_REQUIRE(bool(e), what << ": " << (e ? "" : e.error().message));
  return std::move(*e);
}

inline void must(Expected<void> e, const char* what) {
  BOOST_TEST_REQUIRE(bool(e), what << ": " << (e ? "" : e.error().message));
}

// The files a member's TLS is made of (replica/tls.hpp), as memlend run's
// --tls-ca, --tls-cert and --tls-key.
struct TlsFiles {
  std::string ca, cert, key;
};

class Cluster {
 public:
  // `prepare(id, data_dir)` runs before each node first starts (a test's
  // own filesystem under one, say). With `tls`, every node speaks it.
  explicit Cluster(int size = 3, std::function<void(int, const std::string&)> prepare = {},
                   std::optional<TlsFiles> tls = std::nullopt)
      : dir_(make_temp_dir("replica")), addresses_(size), nodes_(size), tls_files_(std::move(tls)) {
    if (tls_files_) {
      auto loaded = Tls::load(tls_files_->ca, tls_files_->cert, tls_files_->key);
      BOOST_TEST_REQUIRE(bool(loaded), (loaded ? "" : loaded.error().message));
      options_.tls = *loaded;
    }
    for (auto& a : addresses_) a = "127.0.0.1:" + std::to_string(free_loopback_port());
    for (int id = 1; id <= size; ++id) {
      if (prepare) prepare(id, data_dir(id));
      start(id);
    }
    Client leader =
        must(connect_leader({address(1)}, "", election_bound, options_), "the bootstrapped node leads");
    BOOST_TEST_REQUIRE(must(leader.leader(), "leader").id == 1u);
    for (int id = 2; id <= size; ++id) {
      must(leader.add(id, address(id)), "add");
      must(leader.assign(id, id <= 3 ? Role::voter : Role::standby), "assign");
    }
  }

  // Its nodes stopped first: they write into the directory until they end.
  ~Cluster() {
    for (auto& node : nodes_) node.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const std::string& address(int id) const { return addresses_[id - 1]; }
  std::vector<std::string> addresses() const { return {addresses_.begin(), addresses_.end()}; }

  std::string data_dir(int id) const { return dir_ + "/node" + std::to_string(id); }
  // How a client reaches the nodes: over their TLS when they speak it.
  const ClientOptions& options() const { return options_; }

  // Starts node `id`, afresh or from what its data directory holds; with
  // `as`, a member of that id in node `id`'s place (address, directory).
  void start(int id, std::uint64_t as = 0) {
    auto& node = nodes_[id - 1];
    node.reset();
    std::string data = data_dir(id);
    std::vector<std::string> args{MEMLEND_REPLICA_NODE_HOST, std::to_string(as ? as : static_cast<std::uint64_t>(id)),
                                  address(id), data, latency_ms};
    if (tls_files_) args.insert(args.end(), {tls_files_->ca, tls_files_->cert, tls_files_->key});
    node = std::make_unique<Child>(args, dir_ + "/node" + std::to_string(id) + "-run");
    BOOST_TEST_REQUIRE(!node->wait_stdout("ready", seconds(30)).empty(),
                       "node " << id << " did not start: " << node->err());
  }

  // What node `id` said on stderr (its last start's).
  std::string err(int id) const { return nodes_[id - 1] ? nodes_[id - 1]->err() : std::string(); }

  void kill9(int id) {
    nodes_[id - 1]->kill9();
    nodes_[id - 1]->wait(seconds(10));
  }

 private:
  std::string dir_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<Child>> nodes_;
  std::optional<TlsFiles> tls_files_;
  ClientOptions options_;
};


}  // namespace memlend::test::replica_cluster
