// A controller that can run on any node (issue: no single point of failure):
// each node runs a member of the dqlite cluster that keeps the store, and the
// controller's actors run on the member that leads it, from the moment it
// leads until it no longer does. The store's writes go through the leader
// and are durable on a quorum, so the next leader resumes from every
// decision acknowledged before, as a restarted controller does.
#pragma once

#include "core/expected.hpp"
#include "persistence/store.hpp"
#include "replica/client.hpp"
#include "replica/node.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace memlend {

struct MemberOptions {
  std::uint64_t id = 0;                 // 1 bootstraps the cluster; never reused
  std::string address;                  // host:port of this member, for Raft and clients
  std::vector<std::string> join;        // members to join through (not for id 1)
  std::string data_dir;                 // Raft's log and snapshots
  std::optional<std::chrono::milliseconds> network_latency;
  // The cluster's TLS, for Raft and the store's clients alike; null: plain
  // TCP, which only tests of the engine use.
  std::shared_ptr<const replica::Tls> tls;
  std::string database = "memlend";
  // How often the leader probes the others; three misses in a row make a
  // member dead to the roles it keeps.
  std::chrono::milliseconds role_period{2000};
};

// The cluster keeps this many voters; the other members are standbys, which
// hold a copy of the log and can be made voters, and spares.
inline constexpr std::size_t store_voters = 3;

class Member {
 public:
  // Starts this node's member and, for a new member, has the leader (found
  // through `join`) add it, as a voter while the cluster has fewer than
  // store_voters, else as a standby; waits for that until a stop signal.
  static Expected<std::unique_ptr<Member>> start(const MemberOptions& options);

  // Stops keeping roles, then the member.
  ~Member();
  Member(const Member&) = delete;
  Member& operator=(const Member&) = delete;

  // Whether this member leads now, as it sees itself.
  bool leads();
  // The store as this member reaches it: through itself.
  store::Replica store() const;
  const MemberOptions& options() const { return options_; }

 private:
  explicit Member(MemberOptions options) : options_(std::move(options)) {}
  // While it leads, every `role_period`: voters that stopped answering give
  // their vote to members that answer (replica/roles.hpp).
  void keep_roles();
  MemberOptions options_;
  std::unique_ptr<replica::Node> node_;
  std::mutex mutex_;
  std::optional<replica::Client> self_;  // leads()'s connection, kept while it works
  std::condition_variable stop_;
  bool stopping_ = false;
  std::thread keeper_;
};

// Waits until `member` leads, then runs `lead(still_leading)`, which runs
// the controller until it returns; again each time this node leads anew.
// `lead` returns lost_leadership when it stopped because this node no longer
// leads, else the process's exit status, which this returns. A stop signal
// while following ends it with 0.
inline constexpr int lost_leadership = -1;
int follow_leadership(Member& member, const std::function<int(std::function<bool()> still_leading)>& lead);

}  // namespace memlend
