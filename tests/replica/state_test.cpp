#define BOOST_TEST_MODULE replica_state
#include <boost/test/unit_test.hpp>

// `memlend state` and `memlend why` as support runs them on a node of a
// cluster: the real binary reads the store a three-node dqlite cluster keeps,
// through whichever member it is given or its config names, and exports it
// as a plain file that reads as the same store.

#include "persistence/store.hpp"
#include "tests/persistence/support.hpp"
#include "tests/replica/cluster.hpp"
#include "tests/replica/store_support.hpp"
#include "tests/support/pki.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace memlend::store;
using namespace memlend::test::replica_cluster;
using memlend::test::replica_store::open_ok;
using memlend::test::run_process;
using memlend::test::TempDir;

namespace {

const std::string bin = MEMLEND_BINARY;

// The cluster's certificates, made once for the run: its members speak TLS,
// as memlend run's do.
const memlend::test::Pki& pki() {
  static memlend::test::Pki made;
  return made;
}
TlsFiles node_tls(const std::string& node = "B", const std::string& ca = "ca") {
  return {pki().file(ca + ".pem"), pki().file(node + ".pem"), pki().file(node + ".key")};
}
std::vector<std::string> tls_flags(const TlsFiles& t = node_tls()) {
  return {"--tls-ca", t.ca, "--tls-cert", t.cert, "--tls-key", t.key};
}
const std::string granted_because = "B has 65536 MiB free and lends VM0 1024 MiB";

void commit_ok(Store& s, Batch b) {
  auto o = s.commit(std::move(b));
  BOOST_TEST_REQUIRE(o.ok(), o.error);
}

// Hosts A and B, VM0 on A, lease 1 of 1 GiB from B granted with its reason,
// and the leadership epoch a controller raised.
void fill(Store& s) {
  Batch b(1);
  for (std::uint32_t h = 0; h < 2; ++h) b.put(memlend::test::test_host(h));
  VmRecord vm;
  vm.id = 0;
  vm.name = "VM0";
  vm.host = 0;
  vm.memory_mib = 8192;
  b.put(vm).epoch(3);
  commit_ok(s, std::move(b));
  LeaseRecord l;
  l.id = 1;
  l.vm = 0;
  l.donor = 1;
  l.recipient = 0;
  l.mib = 1024;
  l.state = LeaseState::reserving;
  commit_ok(s, Batch(2).put(l));
  l.state = LeaseState::active;
  commit_ok(s, Batch(3).put(l).event(EventRecord{0, 3, "lease_granted", "VM0", "A", "B", 1024, granted_because}));
}

// The same, through the cluster's first member, as a controller writes it.
void fill(const Cluster& cluster) {
  Replica where;
  where.members = {cluster.address(1)};
  where.tls = cluster.options().tls;
  where.find_leader = election_bound;
  fill(*open_ok(where));
}

memlend::test::ProcessResult run_ok(std::vector<std::string> argv) {
  // Every command that reads the cluster is given the node's TLS files.
  if (std::find(argv.begin(), argv.end(), "--replica") != argv.end()) {
    auto flags = tls_flags();
    argv.insert(argv.end(), flags.begin(), flags.end());
  }
  auto r = run_process(argv, 60);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  return r;
}

void expect_bad_input(std::vector<std::string> args, const std::string& names, const std::string& what) {
  args.insert(args.begin(), bin);
  std::string wrong = memlend::test::bad_input_answer(args, names, what);
  BOOST_TEST(wrong.empty(), wrong);
}

}  // namespace

BOOST_AUTO_TEST_CASE(state_and_why_read_the_clusters_store_through_any_member) {
  Cluster cluster(3, {}, node_tls());
  fill(cluster);
  // Through a follower: the reading is the leader's.
  auto text = run_ok({bin, "state", "--replica", cluster.address(3)});
  BOOST_TEST(text.out.find("memlend store the cluster through " + cluster.address(3)) != std::string::npos, text.out);
  BOOST_TEST(text.out.find("leadership epoch 3") != std::string::npos, text.out);
  BOOST_TEST(text.out.find("leases, not released (1)") != std::string::npos, text.out);

  // Several members, the first of which no longer answers.
  std::string members = "127.0.0.1:" + std::to_string(memlend::test::free_loopback_port()) + "," + cluster.address(2);
  auto j = nlohmann::json::parse(run_ok({bin, "state", "--json", "--replica", members}).out);
  BOOST_TEST_REQUIRE(j.at("leases").size() == 1u);
  BOOST_TEST(j.at("leases")[0].at("state") == "active");
  BOOST_TEST(j.at("controller").at("epoch") == 3);
  BOOST_TEST(j.at("database") == "the cluster through " + members);

  auto w = nlohmann::json::parse(run_ok({bin, "why", "VM0", "--json", "--replica", cluster.address(1)}).out);
  BOOST_TEST_REQUIRE(w.at("decisions").size() == 1u);
  BOOST_TEST(w.at("decisions")[0].at("reason") == granted_because);

  // The export is a plain file that reads as the same store.
  TempDir dir("replica-state");
  std::string file = dir.file("copy.db");
  auto exported = run_ok({bin, "state", "--export", file, "--replica", cluster.address(2)});
  BOOST_TEST(exported.out.find("exported the cluster through") != std::string::npos, exported.out);
  auto copy = nlohmann::json::parse(run_ok({bin, "state", "--json", "--db", file}).out);
  BOOST_TEST(copy.at("leases") == j.at("leases"));
  BOOST_TEST(copy.at("hosts") == j.at("hosts"));
  BOOST_TEST(copy.at("controller").at("epoch") == 3);

  // A node's config that names its member is enough: no flag needed.
  std::string config = dir.file("memlend.conf");
  std::ofstream(config) << "# a node of the cluster\nreplica-id = 3\nreplica-address = \"" << cluster.address(3)
                        << "\"\nreplica-join = \"" << cluster.address(1) << "\"\ndb = \"" << dir.file("old.db")
                        << "\"\ntls-ca = \"" << node_tls().ca << "\"\ntls-cert = \"" << node_tls().cert
                        << "\"\ntls-key = \"" << node_tls().key << "\"\n";
  auto by_config = nlohmann::json::parse(run_ok({bin, "state", "--json", "--config", config}).out);
  BOOST_TEST(by_config.at("database") == "the cluster through " + cluster.address(3) + "," + cluster.address(1));
  BOOST_TEST(by_config.at("leases") == j.at("leases"));
  // So is it for a support bundle: its state is the cluster's.
  std::string bundle = dir.file("bundle.tar.gz");
  run_ok({bin, "support-bundle", bundle, "--config", config, "--since", "1h"});
  run_ok({memlend::test::find_program("tar"), "-xzf", bundle, "-C", dir.path});
  std::string state_json, manifest;
  for (const auto& top : std::filesystem::directory_iterator(dir.path))
    if (top.is_directory()) {
      state_json = memlend::test::read_file(top.path().string() + "/state.json");
      manifest = memlend::test::read_file(top.path().string() + "/MANIFEST");
    }
  BOOST_TEST(manifest.find("store:     the cluster through " + cluster.address(3)) != std::string::npos, manifest);
  BOOST_TEST_REQUIRE(!state_json.empty(), manifest);
  BOOST_TEST(nlohmann::json::parse(state_json).at("leases") == j.at("leases"));
  // The command line's --db still reads the file it names.
  auto by_file = nlohmann::json::parse(run_ok({bin, "state", "--json", "--config", config, "--db", file}).out);
  BOOST_TEST(by_file.at("database") == file);
}

BOOST_AUTO_TEST_CASE(a_bad_member_is_refused_in_one_line) {
  TempDir dir("replica-state-bad");
  expect_bad_input({"state", "--replica", "nohost"}, "--replica", "is not HOST:PORT");
  expect_bad_input({"why", "VM0", "--replica", "127.0.0.1:0"}, "--replica", "is not HOST:PORT");
  expect_bad_input({"state", "--replica", "127.0.0.1:1", "--db", dir.file("x.db")}, "--db", "excludes --replica");
  std::string config = dir.file("memlend.conf");
  std::ofstream(config) << "replica-address = \"somewhere\"\n";
  expect_bad_input({"state", "--config", config}, config + ":1: key replica-address", "is not HOST:PORT");
}

BOOST_AUTO_TEST_CASE(members_lists_the_cluster_and_removes_a_dead_member_only) {
  Cluster cluster(3, {}, node_tls());
  std::string through = cluster.address(2);
  auto listed = [&] { return nlohmann::json::parse(run_ok({bin, "members", "--json", "--replica", through}).out); };
  auto j = listed();
  BOOST_TEST_REQUIRE(j.at("members").size() == 3u);
  for (const auto& m : j.at("members")) {
    BOOST_TEST(m.at("role") == "voter");
    BOOST_TEST(m.at("answers") == true);
    BOOST_TEST(m.at("leads") == (m.at("id") == 1));
  }
  auto text = run_ok({bin, "members", "--replica", through}).out;
  BOOST_TEST(text.find("1  " + cluster.address(1) + "  voter, leads") != std::string::npos, text);

  auto remove = [&](const std::string& id) {
    std::vector<std::string> args{"members", "--replica", through, "--remove", id};
    auto flags = tls_flags();
    args.insert(args.end(), flags.begin(), flags.end());
    return args;
  };
  expect_bad_input(remove("1"), "--remove: member 1", "leads");
  expect_bad_input(remove("3"), "--remove: member 3", "stop its memlend first");
  expect_bad_input(remove("9"), "--remove: member 9", "is not in the cluster");

  cluster.kill9(3);
  auto dead = listed();
  BOOST_TEST(dead.at("members")[2].at("answers") == false);
  auto removed = run_ok({bin, "members", "--replica", through, "--remove", "3"});
  BOOST_TEST(removed.out.find("removed member 3 (" + cluster.address(3) + "), a voter") == 0u, removed.out);
  BOOST_TEST(listed().at("members").size() == 2u);
}

BOOST_AUTO_TEST_CASE(the_clusters_store_is_read_with_a_certificate_of_the_cluster_only) {
  Cluster cluster(3, {}, node_tls());
  fill(cluster);
  // No TLS files: refused before any connection, naming the first missing.
  expect_bad_input({"state", "--replica", cluster.address(1)}, "--tls-ca", "needed to read a cluster's store");
  expect_bad_input({"members", "--replica", cluster.address(1), "--tls-ca", node_tls().ca}, "--tls-cert", "needed");
  // A key that is not the certificate's.
  TlsFiles mixed = node_tls();
  mixed.key = pki().file("evil.key");
  auto mixed_flags = tls_flags(mixed);
  std::vector<std::string> args{"state", "--replica", cluster.address(1)};
  args.insert(args.end(), mixed_flags.begin(), mixed_flags.end());
  expect_bad_input(args, "--tls-key", "is not --tls-cert's key");
  // A certificate another CA signed, trusting that CA: the members refuse its
  // handshake, and it theirs; no leader is found, in bounded time.
  auto stranger_flags = tls_flags(node_tls("stranger", "otherca"));
  std::vector<std::string> stranger{bin, "state", "--replica", cluster.address(1)};
  stranger.insert(stranger.end(), stranger_flags.begin(), stranger_flags.end());
  auto refused = run_process(stranger, 60);
  BOOST_TEST(refused.status == 2, refused.err);
  BOOST_TEST(refused.err.find("no leader found") != std::string::npos, refused.err);
  BOOST_TEST(refused.err.find("TLS handshake failed") != std::string::npos, refused.err);
  // Any other node of the cluster reads it with its own certificate.
  auto evil = tls_flags(node_tls("evil"));
  std::vector<std::string> member{bin, "state", "--json", "--replica", cluster.address(2)};
  member.insert(member.end(), evil.begin(), evil.end());
  auto read = run_process(member, 60);
  BOOST_TEST_REQUIRE(read.status == 0, read.err);
  BOOST_TEST(nlohmann::json::parse(read.out).at("controller").at("epoch") == 3);
}
