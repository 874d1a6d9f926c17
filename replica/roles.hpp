// The cluster's roles kept as LXD keeps them: three voters, two standbys
// (a copy of the log, ready to vote), the other members spares. When a voter
// stops answering, a member that answers takes its place, so that the
// cluster survives the next death too: three voters of which one is dead
// leave a quorum, but one more death would not.
#pragma once

#include "core/expected.hpp"
#include "replica/client.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace memlend::replica {

struct RoleTargets {
  std::size_t voters = 3;
  std::size_t standbys = 2;
};

struct RoleChange {
  std::uint64_t id = 0;
  Role to = Role::spare;
};

// What to assign, in order, given the members, those that answer and the
// leader (which always answers and keeps its vote). Promotions come before
// the demotions they allow: the cluster never has fewer voters that answer
// than before a step. A dead voter is made a spare only once a live member
// has its vote; a dead standby is made a spare at once (it holds nothing a
// vote could use), and live spares fill the standbys' places.
// Members in `joining` count as they are and change nothing: their join is
// assigning their role, and two changes at once are refused.
std::vector<RoleChange> rebalance(const std::vector<NodeInfo>& members, const std::set<std::uint64_t>& answering,
                                  std::uint64_t leader, RoleTargets targets = {},
                                  const std::set<std::uint64_t>& joining = {});

// One member's health as the leader sees it, over passes: dead after
// `misses` failed probes in a row, so that one slow answer moves no vote.
class RoleKeeper {
 public:
  // `probe(address)`: whether the member there answers now.
  RoleKeeper(std::function<bool(const std::string&)> probe, unsigned misses = 3, RoleTargets targets = {});
  // On the leader, through `leader` (a client of this node, which leads):
  // probes every other member, then assigns what rebalance() says (a member
  // first seen in this pass is left to its join). Each
  // change made, as "member 2 (10.0.0.2:7420): voter → spare".
  Expected<std::vector<std::string>> pass(Client& leader, std::uint64_t self);

 private:
  std::function<bool(const std::string&)> probe_;
  unsigned misses_;
  RoleTargets targets_;
  std::map<std::uint64_t, unsigned> missed_;
};

// Whether a dqlite node answers at `address` within `limits.timeout`.
bool answers(const std::string& address, ClientOptions limits);

}  // namespace memlend::replica
