#define BOOST_TEST_MODULE replica_recover
#include <boost/test/unit_test.hpp>

// A cluster that lost its quorum for good: two voters of three killed with
// kill -9 and their disks gone. The survivor alone elects nobody; `memlend
// members --recover` on it, stopped, makes it the cluster's one voter from
// its own log, and started again it leads with every committed row, and a
// new node joins it. And a member whose own log is damaged, which joins
// again from nothing.

#include "persistence/store.hpp"
#include "tests/persistence/support.hpp"
#include "tests/replica/cluster.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace memlend::test::replica_cluster;
using memlend::test::run_process;
using memlend::test::TempDir;

namespace {

const std::string bin = MEMLEND_BINARY;

void expect_bad_input(std::vector<std::string> args, const std::string& names, const std::string& what) {
  args.insert(args.begin(), bin);
  std::string wrong = memlend::test::bad_input_answer(args, names, what);
  BOOST_TEST(wrong.empty(), wrong);
}

std::vector<std::string> recover_flags(const Cluster& cluster, int id) {
  return {"members", "--recover", "--replica-id", std::to_string(id), "--replica-address", cluster.address(id),
          "--replica-dir", cluster.data_dir(id)};
}

std::int64_t rows(Client& c) {
  auto r = must(c.query("SELECT count(*) FROM t"), "count");
  BOOST_TEST_REQUIRE(r.rows.size() == 1u);
  return std::get<std::int64_t>(r.rows[0][0]);
}

// The leader, once it has committed a table of 100 rows.
Client with_rows(const Cluster& cluster) {
  Client c = must(connect_leader({cluster.address(1)}, db, election_bound), "leader");
  must(c.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"), "create");
  for (int i = 0; i < 100; ++i)
    must(c.exec("INSERT INTO t (v) VALUES (?)", {Value{"row " + std::to_string(i)}}), "insert");
  return c;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_survivor_recovered_alone_leads_with_every_committed_row) {
  Cluster cluster;
  with_rows(cluster);
  // Two voters gone for good, their logs with them.
  cluster.kill9(2);
  cluster.kill9(3);
  std::filesystem::remove_all(cluster.data_dir(2));
  std::filesystem::remove_all(cluster.data_dir(3));

  // Running, the survivor is refused: its memlend must be stopped first.
  expect_bad_input(recover_flags(cluster, 1), "--recover: something answers at " + cluster.address(1),
                   "stop this node's memlend first");
  // Alone it steps down and nobody leads: one vote of three is no majority.
  auto until = std::chrono::steady_clock::now() + election_bound;
  bool leaderless = false;
  while (!leaderless && std::chrono::steady_clock::now() < until) {
    auto c = Client::connect(cluster.address(1));
    auto who = c ? c->leader() : memlend::Expected<NodeInfo>(c.error());
    leaderless = who && who->id == 0;
    if (!leaderless) std::this_thread::sleep_for(milliseconds(20));
  }
  BOOST_TEST_REQUIRE(leaderless, "the survivor still names a leader");
  cluster.kill9(1);

  // Wrong or missing member: refused in one line, the log untouched.
  TempDir empty("replica-recover-empty");
  auto no_log = recover_flags(cluster, 1);
  no_log.back() = empty.path;
  expect_bad_input(no_log, "--replica-dir: " + empty.path, "holds no member's log");
  expect_bad_input({"members", "--recover", "--replica-id", "1", "--replica-dir", cluster.data_dir(1)},
                   "--replica-address", "is not HOST:PORT");
  expect_bad_input({"members", "--recover", "--replica-address", cluster.address(1), "--replica-dir",
                    cluster.data_dir(1)},
                   "--replica-id", "needed with --recover");
  expect_bad_input({"members", "--recover", "--remove", "2"}, "--remove", "excludes --recover");

  // The member's files belong to the service's user, and the operator runs
  // the recovery as root: what it writes goes to that user too.
  // Only root can give files away: elsewhere this part is left out.
  constexpr uid_t service_user = 65534;
  const bool as_root = ::geteuid() == 0;
  if (!as_root) BOOST_TEST_MESSAGE("not root: the recovered files' owner is not checked");
  for (const auto& e : std::filesystem::recursive_directory_iterator(cluster.data_dir(1)))
    if (as_root) BOOST_TEST_REQUIRE(::lchown(e.path().c_str(), service_user, service_user) == 0);
  if (as_root) BOOST_TEST_REQUIRE(::chown(cluster.data_dir(1).c_str(), service_user, service_user) == 0);

  // Recovered from a node's config, as an operator runs it on the node.
  TempDir dir("replica-recover");
  std::string config = dir.file("memlend.conf");
  std::ofstream(config) << "replica-id = 1\nreplica-address = \"" << cluster.address(1) << "\"\nreplica-dir = \""
                        << cluster.data_dir(1) << "\"\nreplica-join = \"" << cluster.address(2) << "\"\n";
  auto recovered = run_process({bin, "members", "--recover", "--config", config}, 60);
  BOOST_TEST_REQUIRE(recovered.status == 0, recovered.err);
  BOOST_TEST(recovered.out.find("member 1 (" + cluster.address(1) + ") is now the only member") == 0u,
             recovered.out);

  for (const auto& e : std::filesystem::recursive_directory_iterator(cluster.data_dir(1))) {
    if (!as_root) break;
    struct stat st {};
    BOOST_TEST_REQUIRE(::lstat(e.path().c_str(), &st) == 0);
    BOOST_TEST(st.st_uid == service_user, e.path().string() << " belongs to uid " << st.st_uid);
  }

  cluster.start(1);
  Client c = must(connect_leader({cluster.address(1)}, db, election_bound), "the recovered member leads");
  BOOST_TEST(rows(c) == 100);
  must(c.exec("INSERT INTO t (v) VALUES ('after')"), "a write, committed by the one voter");
  auto members = must(c.cluster(), "members");
  BOOST_TEST_REQUIRE(members.size() == 1u);
  BOOST_TEST(members[0].id == 1u);
  BOOST_TEST((members[0].role == Role::voter));

  // A node joins it anew, empty, under an id never used: it takes the log.
  std::filesystem::remove_all(cluster.data_dir(2));
  // Node 2's address and directory, under id 4: start() names the id by
  // slot, so the new member is added under 4 and given slot 2's place.
  cluster.start(2, 4);
  must(c.add(4, cluster.address(2)), "add a new member");
  must(c.assign(4, Role::voter), "make it a voter");
  must(c.exec("INSERT INTO t (v) VALUES ('with two')"), "a write on two voters");
  cluster.kill9(1);
  cluster.start(1);
  Client again = must(connect_leader({cluster.address(1), cluster.address(2)}, db, election_bound), "a leader");
  BOOST_TEST(rows(again) == 102);
}

// A member whose log was cut short, as dqlite's users report after a power
// loss or a full disk: it refuses to start from it rather than serve a
// history with a hole, and the README's way back (remove it, set its
// directory aside, join anew under an id never used) gives the cluster its
// third voter again with every committed row.
BOOST_AUTO_TEST_CASE(a_member_whose_log_is_cut_short_joins_again_under_a_new_id) {
  Cluster cluster;
  Client c = with_rows(cluster);
  // A member closes the segments it finds open when it starts: member 3's
  // log is then closed segments, which Raft reads whole or not at all.
  cluster.kill9(3);
  cluster.start(3);
  must(c.exec("INSERT INTO t (v) VALUES ('while 3 is back')"), "insert");
  cluster.kill9(3);
  cluster.start(3);
  cluster.kill9(3);

  int cut = 0;
  for (const auto& e : std::filesystem::directory_iterator(cluster.data_dir(3))) {
    std::string name = e.path().filename().string();
    bool closed = name.size() == 33 && name[16] == '-' &&
                  name.find_first_not_of("0123456789-") == std::string::npos;
    if (!closed || e.file_size() < 64) continue;
    std::filesystem::resize_file(e.path(), e.file_size() / 2);
    ++cut;
  }
  BOOST_TEST_REQUIRE(cut > 0, "member 3 has no closed segment to cut");

  // Started on it, the member says why and ends; nothing else serves there.
  auto refused = run_process({MEMLEND_REPLICA_NODE_HOST, "3", cluster.address(3), cluster.data_dir(3), latency_ms}, 60);
  BOOST_TEST(refused.status == 1, "status " << refused.status << ": " << refused.err);
  BOOST_TEST(refused.err.find("dqlite node: start from " + cluster.data_dir(3) + " failed") != std::string::npos,
             refused.err);
  BOOST_TEST_MESSAGE("a member on a log cut short: " << refused.err);

  must(c.exec("INSERT INTO t (v) VALUES ('on two voters')"), "the two others commit");
  must(c.remove(3), "remove the damaged member");
  std::filesystem::rename(cluster.data_dir(3), cluster.data_dir(3) + ".damaged");
  cluster.start(3, 4);
  must(c.add(4, cluster.address(3)), "add it anew");
  must(c.assign(4, Role::voter), "make it a voter");
  must(c.exec("INSERT INTO t (v) VALUES ('on three again')"), "a write on three voters");

  // Members 1 and 4 make the quorum only if 4 holds the whole log.
  cluster.kill9(2);
  Client after = must(connect_leader({cluster.address(1), cluster.address(3)}, db, election_bound), "a leader");
  must(after.exec("INSERT INTO t (v) VALUES ('without 2')"), "a write by members 1 and 4");
  BOOST_TEST(rows(after) == 104);
  auto members = must(after.cluster(), "members");
  std::vector<std::uint64_t> ids;
  for (const auto& m : members) ids.push_back(m.id);
  BOOST_TEST(ids == (std::vector<std::uint64_t>{1, 2, 4}), "members");
}
