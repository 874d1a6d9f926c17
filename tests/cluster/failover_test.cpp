// No single point of failure: three nodes each run `memlend run` with a
// member of the dqlite cluster that keeps the store, each in a network
// namespace of its own, and the controller runs on the member that leads.
// Two agents of real nodes (the exec backend) join it through the list of
// all three. The leader is killed with kill -9 in the middle of the work:
// another member leads, its controller resumes from the replicated store,
// the agents find it, the lease lent before goes on untouched (never
// unplugged, never granted twice), and the new controller decides anew.
#define BOOST_TEST_MODULE failover
#include <boost/test/unit_test.hpp>

#include "tests/cluster/exec_node.hpp"
#include "tests/cluster/netns.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using memlend::test::eventually;
using memlend::test::lines_of;
using memlend::test::make_node;
using memlend::test::namespaces_available;
using memlend::test::NetnsCluster;
using memlend::test::open_settings;
using memlend::test::slurp;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace utf = boost::unit_test;

namespace {

const std::string bin = MEMLEND_BINARY;
const std::vector<std::string> members = {"c1", "c2", "c3"};

class Failover {
 public:
  Failover() : net({"c1", "c2", "c3", "A", "B"}) {
    net.make_certificates({"c1", "c2", "c3", "A", "B"});
    std::ofstream(net.dir() + "/settings.json") << open_settings;
    std::ofstream(net.dir() + "/secret") << "a cluster secret of some length\n";
    ::chmod((net.dir() + "/secret").c_str(), 0600);
    make_node(hooks("A"), "A", 16384, 0, "web", 50);
    make_node(hooks("B"), "B", 65536, 60000, "", 0);
  }

  fs::path hooks(const std::string& h) const { return fs::path(net.dir()) / ("hooks-" + h); }
  std::string log_of(const std::string& node) const { return slurp(net.dir() + "/" + node + ".log"); }

  // Member i of the store; 1 starts the cluster, the others join through it.
  int start_member(int i) {
    std::string name = "c" + std::to_string(i);
    std::vector<std::string> argv = {
        bin, "run", "--scenario", "settings.json", "--events-out", "events-" + name + ".jsonl", "--metrics", "off",
        "--listen", net.address(name) + ":7411", "--cluster", "c1", "--cluster-secret-file", "secret",
        "--tls-ca", "ca.pem", "--tls-cert", name + ".pem", "--tls-key", name + ".key",
        "--replica-id", std::to_string(i), "--replica-address", net.address(name) + ":7420",
        "--replica-dir", "replica-" + name, "--replica-latency-ms", "20"};
    if (i != 1) {
      argv.push_back("--replica-join");
      argv.push_back(net.address("c1") + ":7420");
    }
    return net.start(name, argv, name + ".log");
  }

  int start_agent(const std::string& h) {
    std::string controllers;
    for (const auto& m : members) controllers += (controllers.empty() ? "" : ",") + net.address(m) + ":7411";
    return net.start(h,
                     {bin, "agent", "--controller", controllers, "--platform", "exec", "--hooks-dir",
                      hooks(h).string(), "--listen", net.address(h) + ":7412", "--cluster", "c1",
                      "--cluster-secret-file", "secret", "--tls-ca", "ca.pem", "--tls-cert", h + ".pem", "--tls-key",
                      h + ".key"},
                     h + ".log");
  }

  // The member whose controller runs now, by its log: the last to say it leads.
  std::string leader() const {
    std::string who;
    for (const auto& m : members) {
      std::string log = log_of(m);
      auto leads = log.rfind("leads; the controller starts here");
      auto lost = log.rfind("no longer leads");
      if (leads != std::string::npos && (lost == std::string::npos || lost < leads)) who = m;
    }
    return who;
  }

  // Events as a member's --events-out has them: a controller that resumes
  // brings its file up to the replicated store first.
  std::vector<nlohmann::json> events(const std::string& member) const {
    std::vector<nlohmann::json> out;
    for (const auto& line : lines_of(slurp(net.dir() + "/events-" + member + ".jsonl")))
      out.push_back(nlohmann::json::parse(line));
    return out;
  }

  std::size_t count(const std::string& member, const std::string& event) const {
    std::size_t n = 0;
    for (const auto& e : events(member))
      if (e["event"] == event && e["vm"] == "web") ++n;
    return n;
  }

  // The leadership epoch of the controller an agent joined last, by its log (0: none).
  int last_epoch(const std::string& agent) const {
    std::string log = log_of(agent);
    auto at = log.rfind("(leadership epoch ");
    return at == std::string::npos ? 0 : std::atoi(log.c_str() + at + 18);
  }

  std::vector<std::string> plugs(const std::string& h) const {
    return lines_of(slurp((hooks(h) / "plugs.log").string()));
  }

  std::string logs() const {
    std::string out;
    for (const auto& n : {"c1", "c2", "c3", "A", "B"}) out += std::string("\n--- ") + n + "\n" + log_of(n);
    return out;
  }

  NetnsCluster net;
};

}  // namespace

BOOST_AUTO_TEST_CASE(the_leaders_death_moves_the_controller_and_loses_no_decision,
                     *utf::precondition(namespaces_available)) {
  Failover f;
  std::map<std::string, int> pid;
  pid["c1"] = f.start_member(1);
  bool first = eventually([&] { return f.leader() == "c1"; }, 60s);
  BOOST_TEST_REQUIRE(first, f.logs());
  pid["c2"] = f.start_member(2);
  pid["c3"] = f.start_member(3);
  bool joined = eventually([&] {
    return f.log_of("c2").find("joined as a voter") != std::string::npos &&
           f.log_of("c3").find("joined as a voter") != std::string::npos;
  }, 60s);
  BOOST_TEST_REQUIRE(joined, f.logs());
  int a = f.start_agent("A");
  int b = f.start_agent("B");

  // The first leader lends web 256 MiB of B's, and A's platform plugs it.
  bool lent = eventually([&] { return f.count("c1", "lease_granted") == 1 && f.plugs("A").size() == 1; }, 90s);
  BOOST_TEST_REQUIRE(lent, f.logs());
  // The first controller raised the leadership epoch to 1, and told the agents.
  BOOST_TEST(f.last_epoch("A") == 1, f.logs());

  // The leader's node dies.
  f.net.kill9(pid["c1"]);
  std::string next;
  bool moved = eventually([&] {
    next = f.leader();
    return next == "c2" || next == "c3";
  }, 60s);
  BOOST_TEST_REQUIRE(moved, f.logs());
  auto rejoined = [&](const std::string& h) {
    std::string log = f.log_of(h);
    auto lost = log.find("lost the controller");
    return lost != std::string::npos && log.find("joined cluster c1", lost) != std::string::npos;
  };
  bool back = eventually([&] {
    return f.log_of(next).find("resuming from replicated store memlend") != std::string::npos && rejoined("A") &&
           rejoined("B");
  }, 90s);
  BOOST_TEST_REQUIRE(back, f.logs());
  // The new leader's first transaction raised it: a deposed leader's epoch
  // is below what the agents have now seen, and they would refuse it.
  for (const auto& h : {"A", "B"}) BOOST_TEST(f.last_epoch(h) >= 2, f.logs());

  // The new controller decides: web's guest is short again, by 256 MiB more.
  make_node(f.hooks("A"), "A", 16384, 0, "web", -206);
  bool decided = eventually([&] { return f.count(next, "lease_granted") == 2 && f.plugs("A").size() == 2; }, 90s);
  BOOST_TEST_REQUIRE(decided, f.logs());

  // The first lease went on through the failover: granted once, never
  // released, reclaimed or unplugged.
  BOOST_TEST(f.count(next, "memory_reclaimed") == 0u, f.logs());
  BOOST_TEST(f.count(next, "lease_released") == 0u, f.logs());
  for (const auto& p : f.plugs("A")) BOOST_TEST(p.rfind("attach web ", 0) == 0u, p);
  BOOST_TEST(f.count(next, "lease_granted") == 2u, f.logs());

  f.net.stop(a);
  f.net.stop(b);
  for (const auto& m : {"c2", "c3"}) f.net.stop(pid[m]);
}
