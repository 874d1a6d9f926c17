#define BOOST_TEST_MODULE cli_replica_import
#include <boost/test/unit_test.hpp>

// The upgrade through `memlend run`: a single-node controller's store (of
// FIG. 2's scenario, run on the simulated platform until its lease) is
// imported when the same node starts again, for a cluster, as member 1 of a
// replicated store, and the controller resumes from it with its epoch
// raised; a file that is no store stops the start with exit status 2. One
// member, which leads at once: no network namespaces.

#include "tests/support/child.hpp"
#include "tests/support/http_get.hpp"
#include "tests/support/pki.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>

using memlend::test::Child;
using memlend::test::free_loopback_port;
using namespace std::chrono_literals;

namespace {

const std::string bin = MEMLEND_BINARY;
const std::string scenario = std::string(MEMLEND_SOURCE_DIR) + "/examples/fig2.json";

struct Node {
  memlend::test::Pki pki;
  std::string dir = pki.dir;
  std::string listen = "127.0.0.1:" + std::to_string(free_loopback_port());

  Node() {
    std::ofstream(dir + "/secret") << "a cluster secret of some length\n";
    ::chmod((dir + "/secret").c_str(), 0600);
  }

  // `memlend run` of FIG. 2 in the node's directory (--db is memlend.db
  // there), with these options after the common ones.
  std::unique_ptr<Child> run(const std::vector<std::string>& more, const std::string& log) {
    std::vector<std::string> argv = {bin, "run", "--scenario", scenario, "--metrics", "off"};
    argv.insert(argv.end(), more.begin(), more.end());
    Child::Options o(dir + "/" + log);
    o.workdir = dir;
    return std::make_unique<Child>(argv, o);
  }

  // For a cluster: agents join here, and the store is member 1's.
  std::vector<std::string> member() const {
    return {"--listen", listen, "--cluster", "c1", "--cluster-secret-file", "secret", "--tls-ca", "ca.pem",
            "--tls-cert", "B.pem", "--tls-key", "B.key", "--replica-id", "1", "--replica-address",
            "127.0.0.1:" + std::to_string(free_loopback_port()), "--replica-dir", "replica", "--replica-latency-ms",
            "20"};
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_single_node_store_is_imported_when_its_node_starts_a_cluster) {
  Node node;
  {
    // VM2 is lent 48 GiB by B at t=30 s.
    auto single = node.run({"--for", "40", "--speed", "50", "--data-path", "off"}, "single");
    BOOST_TEST_REQUIRE(single->wait(60s) == 0, single->out() << single->err());
  }
  const std::string db = node.dir + "/memlend.db";
  BOOST_TEST_REQUIRE(std::filesystem::exists(db));

  auto member = node.run(node.member(), "member");
  std::string line = member->wait_stderr("imported into the replicated store memlend", 60s);
  BOOST_TEST_REQUIRE(!line.empty(), member->out() << member->err());
  BOOST_TEST(line.find("memlend.db: imported") != std::string::npos, line);
  BOOST_TEST(line.find("1 leases, 1 mirrors") != std::string::npos, line);
  BOOST_TEST(line.find("leadership epoch 1") != std::string::npos, line);
  BOOST_TEST(line.find("the file is now memlend.db.imported") != std::string::npos, line);
  std::string resumed = member->wait_stdout("resuming from replicated store memlend at t=40s", 60s);
  BOOST_TEST(resumed.find("1 leases, 1 mirrors, 0 recommendations; leadership epoch 2") != std::string::npos,
             member->out() << member->err());
  BOOST_TEST(member->stop() == 0, member->out() << member->err());
  BOOST_TEST(!std::filesystem::exists(db));
  BOOST_TEST(std::filesystem::exists(db + ".imported"));
}

BOOST_AUTO_TEST_CASE(a_file_that_is_no_store_stops_the_start_with_status_2) {
  Node node;
  std::ofstream(node.dir + "/memlend.db") << std::string(8192, 'x');
  auto member = node.run(node.member(), "member");
  BOOST_TEST_REQUIRE(member->wait(60s) == 2, member->err());
  std::string err = member->err();
  BOOST_TEST(err.find("memlend: memlend.db: not an SQLite database") != std::string::npos, err);
  BOOST_TEST(err.find("nothing was imported into the replicated store memlend\n") != std::string::npos, err);
  BOOST_TEST(std::filesystem::exists(node.dir + "/memlend.db"));
  BOOST_TEST(!std::filesystem::exists(node.dir + "/memlend.db.imported"));
}
