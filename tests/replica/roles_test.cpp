#define BOOST_TEST_MODULE replica_roles
#include <boost/test/unit_test.hpp>

// The members' roles kept as voters die: the rule alone, then on a real
// cluster of four processes where a voter is killed with kill -9 and, once
// the leader has given its vote to the standby, another voter too, and the
// cluster still commits.

#include "replica/roles.hpp"
#include "tests/replica/cluster.hpp"

#include <set>
#include <vector>

using namespace memlend::test::replica_cluster;
using memlend::replica::rebalance;
using memlend::replica::RoleChange;
using memlend::replica::RoleKeeper;

namespace {

NodeInfo member(std::uint64_t id, Role role) { return NodeInfo{id, "10.0.0." + std::to_string(id) + ":7420", role}; }

std::string said(const std::vector<RoleChange>& changes) {
  std::string out;
  for (const auto& c : changes) out += std::to_string(c.id) + "→" + std::string(to_string(c.to)) + " ";
  return out;
}

Role role_of(Client& leader, std::uint64_t id) {
  auto members = must(leader.cluster(), "cluster");
  for (const auto& m : members)
    if (m.id == id) return m.role;
  BOOST_FAIL("member " << id << " is not in the cluster");
  return Role::spare;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_dead_voter_gives_its_vote_to_a_standby_then_becomes_a_spare) {
  std::vector<NodeInfo> members = {member(1, Role::voter), member(2, Role::voter), member(3, Role::voter),
                                   member(4, Role::standby), member(5, Role::spare)};
  // 2 is dead: 4 votes (it holds the log), then 2 gives up its vote, then
  // 5 takes 4's place among the standbys.
  BOOST_TEST(said(rebalance(members, {3, 4, 5}, 1)) == "4→voter 2→spare 5→standby ");
  // Everyone answers: nothing to do.
  BOOST_TEST(said(rebalance(members, {2, 3, 4, 5}, 1)) == "5→standby ");
  BOOST_TEST(said(rebalance(members, {2, 3, 4, 5}, 1, {3, 1})).empty());
  // A member whose join is assigning its role is left to it.
  BOOST_TEST(said(rebalance(members, {3, 4, 5}, 1, {}, {4})) == "5→voter 2→spare ");
}

BOOST_AUTO_TEST_CASE(a_dead_voter_keeps_its_vote_while_nobody_can_take_it) {
  std::vector<NodeInfo> members = {member(1, Role::voter), member(2, Role::voter), member(3, Role::voter),
                                   member(4, Role::standby)};
  // 4 is dead too: nobody to vote instead of 2, which stays a voter (the
  // quorum stays two of three), and the dead standby becomes a spare.
  BOOST_TEST(said(rebalance(members, {3}, 1)) == "4→spare ");
  // A spare that answers votes instead, before a standby would be made.
  members[3].role = Role::spare;
  BOOST_TEST(said(rebalance(members, {3, 4}, 1)) == "4→voter 2→spare ");
  // The leader keeps its vote even when nothing else answers.
  BOOST_TEST(said(rebalance(members, {}, 1)).empty());
}

BOOST_AUTO_TEST_CASE(a_cluster_that_lost_a_voter_survives_the_next_death) {
  Cluster cluster(4);
  Client leader = must(connect_leader({cluster.address(1)}, "", election_bound), "leader");
  BOOST_TEST_REQUIRE((role_of(leader, 4) == Role::standby));
  RoleKeeper keeper([](const std::string& address) { return memlend::replica::answers(address, {}); }, 2);
  auto first = must(keeper.pass(leader, 1), "a pass with every member answering");
  BOOST_TEST(first.empty(), first.size() << " changes");

  cluster.kill9(2);
  // Two misses in a row make it dead: the first pass changes nothing.
  BOOST_TEST(must(keeper.pass(leader, 1), "first pass after the death").empty());
  auto changes = must(keeper.pass(leader, 1), "second pass after the death");
  BOOST_TEST_REQUIRE(changes.size() == 2u);
  BOOST_TEST(changes[0].find("member 4") == 0u, changes[0]);
  BOOST_TEST(changes[1].find("member 2") == 0u, changes[1]);
  BOOST_TEST(changes[1].find("not answered 2 probes") != std::string::npos, changes[1]);
  BOOST_TEST((role_of(leader, 4) == Role::voter));
  BOOST_TEST((role_of(leader, 2) == Role::spare));

  // Without the change, voters 1, 2, 3 would keep one of three now.
  cluster.kill9(3);
  Client writer = must(connect_leader({cluster.address(1), cluster.address(4)}, db, election_bound), "a leader");
  must(writer.exec("CREATE TABLE t (x INTEGER)"), "a write after the second death");
  auto rows = must(writer.query("SELECT count(*) FROM t"), "a read");
  BOOST_TEST(rows.rows.size() == 1u);
}
