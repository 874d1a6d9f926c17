// A real node's cluster, as installed: a controller with no list of hosts,
// and agents that learn their hosts and VMs from their platforms (the exec
// backend, whose hooks are shell scripts playing a vendor's firmware) and
// join over TLS, each from a network namespace of its own. The controller
// learns the cluster from them, lends a VM whose guest runs short memory of
// the other host, the VM's platform plugs it, and a controller killed with
// kill -9 comes back from its store knowing the hosts and VMs that joined;
// a VM its node no longer lists gives its lent memory back.
#define BOOST_TEST_MODULE open_cluster
#include <boost/test/unit_test.hpp>

#include "tests/cluster/exec_node.hpp"
#include "tests/cluster/netns.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

using memlend::test::eventually;
using memlend::test::make_node;
using memlend::test::open_settings;
using memlend::test::lines_of;
using memlend::test::namespaces_available;
using memlend::test::NetnsCluster;
using memlend::test::slurp;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace utf = boost::unit_test;

namespace {

const std::string bin = MEMLEND_BINARY;

class OpenCluster {
 public:
  OpenCluster() : net({"ctrl", "A", "B"}) {
    net.make_certificates({"ctrl", "A", "B"});
    std::ofstream(net.dir() + "/settings.json") << open_settings;
    std::ofstream(net.dir() + "/secret") << "a cluster secret of some length\n";
    ::chmod((net.dir() + "/secret").c_str(), 0600);
    // A is short of memory with little left of its own; B has plenty.
    make_node(hooks("A"), "A", 16384, 0, "web", 50);
    make_node(hooks("B"), "B", 65536, 60000, "", 0);
  }

  fs::path hooks(const std::string& h) const { return fs::path(net.dir()) / ("hooks-" + h); }

  int start_controller() {
    return net.start("ctrl",
                     {bin, "run", "--scenario", "settings.json", "--db", "open.db", "--events-out", "events.jsonl",
                      "--metrics", "off", "--listen", net.address("ctrl") + ":7411", "--cluster", "c1",
                      "--cluster-secret-file", "secret", "--tls-ca", "ca.pem", "--tls-cert", "ctrl.pem",
                      "--tls-key", "ctrl.key"},
                     "controller.log");
  }

  // No --host and no --scenario: the node's platform names its host.
  int start_agent(const std::string& h, const std::string& controllers = "") {
    return net.start(h,
                     {bin, "agent", "--controller", controllers.empty() ? net.address("ctrl") + ":7411" : controllers,
                      "--platform", "exec",
                      "--hooks-dir", hooks(h).string(), "--listen",
                      net.address(h) + ":7412", "--cluster", "c1", "--cluster-secret-file", "secret", "--tls-ca",
                      "ca.pem", "--tls-cert", h + ".pem", "--tls-key", h + ".key"},
                     "agent-" + h + ".log");
  }

  std::vector<nlohmann::json> events() const {
    std::vector<nlohmann::json> out;
    for (const auto& line : lines_of(slurp(net.dir() + "/events.jsonl"))) out.push_back(nlohmann::json::parse(line));
    return out;
  }

  std::size_t count(const std::string& event, const std::function<bool(const nlohmann::json&)>& match) const {
    std::size_t n = 0;
    for (const auto& e : events())
      if (e["event"] == event && match(e)) ++n;
    return n;
  }

  std::vector<std::string> plugs(const std::string& h) const {
    return lines_of(slurp((hooks(h) / "plugs.log").string()));
  }

  // With what the test's processes are doing: a run once failed with three
  // empty logs, and their state is what would have said why.
  std::string logs() const {
    auto ps = memlend::test::run_process(
        {"/bin/ps", "-o", "pid,stat,wchan:32,etime,args", "--ppid", std::to_string(::getpid())}, 30);
    return "\n--- controller\n" + slurp(net.dir() + "/controller.log") + "\n--- agent A\n" +
           slurp(net.dir() + "/agent-A.log") + "\n--- agent B\n" + slurp(net.dir() + "/agent-B.log") +
           "\n--- processes\n" + ps.out + ps.err;
  }

  NetnsCluster net;
};

}  // namespace

BOOST_AUTO_TEST_CASE(agents_of_real_nodes_make_the_cluster_and_a_short_vm_is_lent_and_plugged,
                     *utf::precondition(namespaces_available)) {
  OpenCluster c;
  int controller = c.start_controller();
  int a = c.start_agent("A");
  // B is told of two places a controller may be, the first where none is.
  std::string nowhere = c.net.address("ctrl") + ":7499";
  int b = c.start_agent("B", nowhere + "," + c.net.address("ctrl") + ":7411");
  auto granted = [&] {
    return c.count("lease_granted", [](const auto& e) { return e["vm"] == "web" && e["donor"] == "B"; });
  };
  bool lent = eventually([&] { return granted() == 1 && c.plugs("A").size() == 1; }, 90s);
  BOOST_TEST_REQUIRE(lent, c.logs());

  // The platform of the VM's node plugged the lease: its VM, its lease, the
  // donor by name and where its data path listens, the size.
  auto plug = c.plugs("A").front();
  BOOST_TEST(plug.rfind("attach web ", 0) == 0u, plug);
  BOOST_TEST(plug.find(" B " + c.net.address("B") + ":7412 256") != std::string::npos, plug);
  BOOST_TEST(c.plugs("B").empty());
  std::string controller_log = slurp(c.net.dir() + "/controller.log");
  BOOST_TEST(controller_log.find("host A joined with 4 GiB") != std::string::npos, c.logs());
  BOOST_TEST(controller_log.find("VM web appeared on A") != std::string::npos, c.logs());
  BOOST_TEST(slurp(c.net.dir() + "/agent-B.log").find("cannot reach a controller at " + nowhere) != std::string::npos,
             c.logs());
  // The decision's reason says what A's reading of its guest was.
  for (const auto& e : c.events())
    if (e["event"] == "lease_granted")
      BOOST_TEST(e["reason"].get<std::string>().find("(A read: guest has 50 MiB available") != std::string::npos,
                 e.dump());

  // With its memory plugged the guest is no longer short: nothing more is lent.
  std::this_thread::sleep_for(std::chrono::seconds(5));
  BOOST_TEST(granted() == 1u, c.logs());
  BOOST_TEST(c.plugs("A").size() == 1u, c.logs());

  // kill -9 of the controller: it comes back from its store knowing A, B and
  // web, the agents rejoin, and the lease goes on: nothing is unplugged or
  // lent again.
  c.net.kill9(controller);
  controller = c.start_controller();
  auto rejoined = [&](const std::string& h) {
    std::string log = slurp(c.net.dir() + "/agent-" + h + ".log");
    auto lost = log.find("lost the controller");
    return lost != std::string::npos && log.find("joined cluster c1", lost) != std::string::npos;
  };
  BOOST_TEST_REQUIRE(eventually([&] {
    return slurp(c.net.dir() + "/controller.log").find("resuming from open.db") != std::string::npos &&
           rejoined("A") && rejoined("B");
  }, 90s), c.logs());
  std::this_thread::sleep_for(std::chrono::seconds(5));
  BOOST_TEST(granted() == 1u, c.logs());
  BOOST_TEST(c.plugs("A").size() == 1u, c.logs());
  BOOST_TEST(c.net.alive(controller), c.logs());

  // Support tooling reads the same store: both hosts and the VM are in it.
  auto state = memlend::test::run_process({bin, "state", "--db", c.net.dir() + "/open.db", "--json"}, 60);
  BOOST_TEST_REQUIRE(state.status == 0, state.err);
  auto j = nlohmann::json::parse(state.out);
  BOOST_TEST(j.dump().find("\"web\"") != std::string::npos, state.out);

  // web is destroyed: A's platform lists it no more. After detect_samples
  // samples its memory goes back to B, and A's platform is told to unplug
  // it (a hook for a VM that is gone takes that as done).
  make_node(c.hooks("A"), "A", 16384, 0, "", 0);
  auto released = [&] {
    return c.count("lease_released", [](const auto& e) { return e["vm"] == "web" && e["donor"] == "B"; });
  };
  bool given_back = eventually([&] { return released() == 1 && c.plugs("A").size() == 2; }, 90s);
  BOOST_TEST_REQUIRE(given_back, c.logs());
  BOOST_TEST(c.plugs("A").back().rfind("detach web ", 0) == 0u, c.plugs("A").back());
  BOOST_TEST(granted() == 1u, c.logs());

  // web runs again, on B: its hypervisor moved it (a migration memlend did
  // not make). It borrows nothing any more, so the controller records it on
  // B, where B's telemetry now counts for it.
  make_node(c.hooks("B"), "B", 65536, 60000, "web", 5000);
  auto moved = [&] {
    return c.count("vm_migrated", [](const auto& e) { return e["vm"] == "web" && e["host"] == "B"; });
  };
  bool recorded = eventually([&] { return moved() == 1; }, 60s);
  BOOST_TEST_REQUIRE(recorded, c.logs());
  for (const auto& e : c.events())
    if (e["event"] == "vm_migrated")
      BOOST_TEST(e["reason"].get<std::string>().find("its hypervisor moved it, not memlend") != std::string::npos,
                 e.dump());
  auto after = memlend::test::run_process({bin, "state", "--db", c.net.dir() + "/open.db", "--json"}, 60);
  BOOST_TEST_REQUIRE(after.status == 0, after.err);
  bool on_b = false;
  auto placed = nlohmann::json::parse(after.out);
  for (const auto& v : placed["vms"])
    if (v["name"] == "web") on_b = v["host"] == "B";
  BOOST_TEST(on_b, after.out);
  BOOST_TEST(granted() == 1u, c.logs());
  c.net.stop(a);
  c.net.stop(b);
  c.net.stop(controller);
}
