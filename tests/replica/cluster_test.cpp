#define BOOST_TEST_MODULE replica_cluster
#include <boost/test/unit_test.hpp>

// Three dqlite nodes on loopback, each in a process of its own
// (replica_node_host), so that the leader can die by kill -9 as a node would.
// The test speaks to them only through memlend's client of the wire protocol.

#include "replica/client.hpp"
#include "tests/replica/cluster.hpp"
#include "tests/support/http_get.hpp"

#include <array>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

using namespace memlend::replica;
using namespace memlend::test::replica_cluster;
using memlend::ErrorCode;
using memlend::to_string;
using memlend::Expected;
using memlend::test::Child;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

std::vector<Value> row_values(std::int64_t i) {
  Blob blob;
  for (int b = 0; b < 20; ++b) blob.bytes.push_back(static_cast<std::uint8_t>(i * 7 + b));
  Value note = i % 3 == 0 ? Value{Null{}} : Value{"note " + std::to_string(i)};
  return {Value{i}, Value{"row " + std::to_string(i)}, Value{std::move(blob)}, note, Value{i * 0.5}};
}

void create_table(Client& c) {
  must(c.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, data BLOB, "
              "note TEXT, half REAL)"),
       "create table");
}

void insert_rows(Client& c, std::int64_t from, std::int64_t to) {
  for (std::int64_t i = from; i < to; ++i)
    must(c.exec("INSERT INTO t (id, name, data, note, half) VALUES (?, ?, ?, ?, ?)", row_values(i)), "insert");
}

// Every row in [0, count), each as it was written, and nothing else.
void expect_rows(Client& c, std::int64_t count) {
  Rows rows = must(c.query("SELECT id, name, data, note, half FROM t ORDER BY id"), "select");
  BOOST_TEST((rows.columns == std::vector<std::string>{"id", "name", "data", "note", "half"}));
  BOOST_TEST_REQUIRE(rows.rows.size() == static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) BOOST_TEST((rows.rows[i] == row_values(i)), "row " << i);
}

}  // namespace

BOOST_AUTO_TEST_CASE(three_nodes_form_a_cluster_of_three_voters) {
  Cluster cluster;
  Client leader = must(connect_leader(cluster.addresses(), "", election_bound), "leader");
  auto members = must(leader.cluster(), "cluster");
  BOOST_TEST_REQUIRE(members.size() == 3u);
  for (std::size_t i = 0; i < members.size(); ++i) {
    BOOST_TEST(members[i].id == i + 1);
    BOOST_TEST(members[i].address == cluster.address(static_cast<int>(i) + 1));
    BOOST_TEST(to_string(members[i].role) == "voter");
  }
}

BOOST_AUTO_TEST_CASE(a_follower_refuses_sql_and_names_the_leader_who_serves_it) {
  Cluster cluster;
  Client leader = must(connect_leader({cluster.address(1)}, db, election_bound), "leader");
  create_table(leader);
  insert_rows(leader, 0, 50);

  Client follower = must(Client::connect(cluster.address(2)), "connect to a follower");
  NodeInfo named = must(follower.leader(), "leader asked of a follower");
  BOOST_TEST(named.id == 1u);
  BOOST_TEST(named.address == cluster.address(1));
  must(follower.open(db), "open on a follower");
  auto write = follower.exec("INSERT INTO t (id, name) VALUES (1000, 'not here')");
  BOOST_TEST_REQUIRE(!write);
  BOOST_TEST(to_string(write.error().code) == to_string(ErrorCode::unavailable), write.error().message);
  BOOST_TEST(follower.failure_code() == not_leader_code);
  auto read = follower.query("SELECT count(*) FROM t");
  BOOST_TEST_REQUIRE(!read);
  BOOST_TEST(to_string(read.error().code) == to_string(ErrorCode::unavailable), read.error().message);
  BOOST_TEST(!follower.spent(), "a FAILURE leaves the connection usable");

  // Asked through the follower only, the client finds the leader.
  Client redirected = must(connect_leader({cluster.address(2)}, db, election_bound), "redirect");
  BOOST_TEST(redirected.address() == cluster.address(1));
  expect_rows(redirected, 50);
  BOOST_TEST(must(redirected.query("SELECT id FROM t WHERE id = 1000"), "not written").rows.empty());
}

BOOST_AUTO_TEST_CASE(sql_errors_are_refusals_and_the_connection_goes_on) {
  Cluster cluster;
  Client c = must(connect_leader(cluster.addresses(), db, election_bound), "leader");
  create_table(c);
  auto bad = c.exec("INSERT INTO no_such_table VALUES (1)");
  BOOST_TEST_REQUIRE(!bad);
  BOOST_TEST(to_string(bad.error().code) == to_string(ErrorCode::refused), bad.error().message);
  BOOST_TEST(bad.error().message.find("no_such_table") != std::string::npos, bad.error().message);
  auto dup = c.exec("INSERT INTO t (id, name) VALUES (1, 'a'); INSERT INTO t (id, name) VALUES (1, 'b')");
  BOOST_TEST(!dup);
  // A transaction over several requests: its rows count once it commits.
  must(c.exec("BEGIN"), "begin");
  for (int i = 10; i < 20; ++i) must(c.exec("INSERT INTO t (id, name) VALUES (?, 'tx')", {Value{std::int64_t{i}}}), "in tx");
  must(c.exec("COMMIT"), "commit");
  Rows n = must(c.query("SELECT count(*), sum(id) FROM t WHERE name = ?", {Value{std::string("tx")}}), "count");
  BOOST_TEST_REQUIRE(n.rows.size() == 1u);
  BOOST_TEST((n.rows[0] == std::vector<Value>{Value{std::int64_t{10}}, Value{std::int64_t{145}}}));
  auto nul = c.exec(std::string("SELECT 1\0", 9));
  BOOST_TEST_REQUIRE(!nul);
  BOOST_TEST(to_string(nul.error().code) == to_string(ErrorCode::invalid_input));
  // More rows than one response holds arrive in several, as one result.
  must(c.exec("WITH RECURSIVE n(i) AS (SELECT 100 UNION ALL SELECT i + 1 FROM n WHERE i < 3099) "
              "INSERT INTO t (id, name) SELECT i, printf('bulk %d', i) FROM n"),
       "bulk insert");
  Rows bulk = must(c.query("SELECT id, name FROM t WHERE id >= 100 ORDER BY id"), "bulk select");
  BOOST_TEST_REQUIRE(bulk.rows.size() == 3000u);
  BOOST_TEST((bulk.rows[2999] == std::vector<Value>{Value{std::int64_t{3099}}, Value{std::string("bulk 3099")}}));
}

BOOST_AUTO_TEST_CASE(a_killed_leader_is_replaced_and_no_committed_row_is_lost) {
  Cluster cluster;
  {
    Client leader = must(connect_leader(cluster.addresses(), db, election_bound), "leader");
    BOOST_TEST_REQUIRE(leader.address() == cluster.address(1));
    create_table(leader);
    insert_rows(leader, 0, 100);
  }
  cluster.kill9(1);

  Client second = must(connect_leader({cluster.address(2), cluster.address(3)}, db, election_bound),
                       "a new leader after kill -9 of the first");
  BOOST_TEST(second.address() != cluster.address(1));
  expect_rows(second, 100);
  insert_rows(second, 100, 110);

  // The dead node comes back from its data directory as a follower; then the
  // second leader dies, and the two left (a quorum only with the restarted
  // node) elect a third that has every row, those written while the first
  // node was down included.
  cluster.start(1);
  int second_id = second.address() == cluster.address(2) ? 2 : 3;
  insert_rows(second, 110, 120);
  cluster.kill9(second_id);
  std::vector<std::string> left;
  for (int id = 1; id <= 3; ++id)
    if (id != second_id) left.push_back(cluster.address(id));
  Client third = must(connect_leader(left, db, election_bound), "a third leader");
  expect_rows(third, 120);
}
