#include "replica/roles.hpp"

#include <algorithm>

namespace memlend::replica {

std::vector<RoleChange> rebalance(const std::vector<NodeInfo>& members, const std::set<std::uint64_t>& answering,
                                  std::uint64_t leader, RoleTargets targets,
                                  const std::set<std::uint64_t>& joining) {
  std::vector<NodeInfo> sorted = members;
  std::sort(sorted.begin(), sorted.end(), [](const NodeInfo& a, const NodeInfo& b) { return a.id < b.id; });
  auto alive = [&](const NodeInfo& m) { return m.id == leader || answering.count(m.id) > 0; };
  std::vector<std::uint64_t> dead_voters, live_standbys, live_spares;
  std::size_t live_voters = 0;
  std::vector<RoleChange> out;
  for (const auto& m : sorted) {
    if (joining.count(m.id)) {
      if (m.role == Role::voter) ++live_voters;
      continue;
    }
    switch (m.role) {
      case Role::voter:
        if (alive(m)) ++live_voters;
        else dead_voters.push_back(m.id);
        break;
      case Role::standby:
        // A change that leaves the voters as they were: first.
        if (alive(m)) live_standbys.push_back(m.id);
        else out.push_back({m.id, Role::spare});
        break;
      case Role::spare:
        if (alive(m)) live_spares.push_back(m.id);
        break;
    }
  }
  std::vector<RoleChange> changes;
  // A vote goes to a standby first: it already holds the log.
  std::vector<std::uint64_t> candidates = live_standbys;
  candidates.insert(candidates.end(), live_spares.begin(), live_spares.end());
  std::size_t next = 0;
  for (; live_voters < targets.voters && next < candidates.size(); ++next, ++live_voters)
    changes.push_back({candidates[next], Role::voter});
  // A dead voter's vote is given up only when the live voters are enough
  // without it: until then it still counts toward the quorum's size only,
  // which is no worse than not having it.
  for (auto id : dead_voters)
    if (live_voters >= targets.voters) changes.push_back({id, Role::spare});
  // Standbys: those left after the votes, then live spares, up to the target.
  std::size_t standbys = next < live_standbys.size() ? live_standbys.size() - next : 0;
  for (std::size_t i = std::max(next, live_standbys.size()); i < candidates.size() && standbys < targets.standbys;
       ++i, ++standbys)
    changes.push_back({candidates[i], Role::standby});
  out.insert(out.end(), changes.begin(), changes.end());
  return out;
}

RoleKeeper::RoleKeeper(std::function<bool(const std::string&)> probe, unsigned misses, RoleTargets targets)
    : probe_(std::move(probe)), misses_(std::max(1u, misses)), targets_(targets) {}

Expected<std::vector<std::string>> RoleKeeper::pass(Client& leader, std::uint64_t self) {
  auto members = leader.cluster();
  if (!members) return members.error();
  std::set<std::uint64_t> answering, joining;
  std::map<std::uint64_t, unsigned> missed;
  for (const auto& m : *members) {
    if (m.id == self) continue;
    if (!missed_.count(m.id)) joining.insert(m.id);
    unsigned n = probe_(m.address) ? 0 : (missed_.count(m.id) ? missed_[m.id] : 0) + 1;
    missed[m.id] = n;
    if (n < misses_) answering.insert(m.id);
  }
  missed_ = std::move(missed);  // members removed since are forgotten
  std::vector<std::string> done;
  for (const auto& c : rebalance(*members, answering, self, targets_, joining)) {
    auto m = std::find_if(members->begin(), members->end(), [&](const NodeInfo& n) { return n.id == c.id; });
    if (auto assigned = leader.assign(c.id, c.to); !assigned)
      return Error{"member " + std::to_string(c.id) + ": cannot make it a " + std::string(to_string(c.to)) + " (" +
                       assigned.error().message + ")",
                   assigned.error().code};
    done.push_back("member " + std::to_string(c.id) + " (" + m->address + "): " + std::string(to_string(m->role)) +
                   " → " + std::string(to_string(c.to)) +
                   (answering.count(c.id) ? "" : ", as it has not answered " + std::to_string(misses_) +
                                                     " probes in a row"));
  }
  return done;
}

bool answers(const std::string& address, ClientOptions limits) {
  auto c = Client::connect(address, limits);
  return c && c->leader();
}

}  // namespace memlend::replica
