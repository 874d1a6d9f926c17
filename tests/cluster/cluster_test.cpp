// memlend across real network namespaces: a controller and four agents, each
// in a namespace of its own on a private bridge, talking CAF over TLS. The
// faults are real: kill -9 of an agent, a link taken down, a stranger with a
// certificate of another CA or without the cluster's secret.
#define BOOST_TEST_MODULE cluster
#include <boost/test/unit_test.hpp>

#include "tests/cluster/netns.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sys/stat.h>
#include <thread>

using memlend::test::namespaces_available;
using memlend::test::NetnsCluster;
using memlend::test::slurp;
namespace utf = boost::unit_test;

namespace {

const std::string bin = MEMLEND_BINARY;

// FIG. 2 on A and B (VM2 grows to 64 GiB: B lends 48 GiB) and FIG. 3's split
// (VM4 on N grows by 16 GiB, spread: B and M lend 8 GiB each).
const char* scenario = R"({
  "settings": { "sample_period_s": 10, "detect_samples": 3, "migrate_after_s": 6000 },
  "hosts": [ { "name": "A", "memory_mib": 16384,  "cpu_mhz": 32000 },
             { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 },
             { "name": "N", "memory_mib": 16384,  "cpu_mhz": 8000 },
             { "name": "M", "memory_mib": 16384,  "cpu_mhz": 8000 } ],
  "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 },
           { "name": "VM4", "host": "N", "memory_mib": 16384, "cpu_mhz": 4000, "donors": "spread" } ],
  "events": [ { "at_s": 20, "vm": "VM2", "memory_mib": 65536 },
              { "at_s": 20, "vm": "VM4", "memory_mib": 32768 } ]
})";

class Cluster {
 public:
  Cluster() : net({"ctrl", "A", "B", "N", "M", "X"}) {
    net.make_certificates({"ctrl", "A", "B", "N", "M"});
    std::ofstream(net.dir() + "/scenario.json") << scenario;
    std::ofstream(net.dir() + "/secret") << "a cluster secret of some length\n";
    ::chmod((net.dir() + "/secret").c_str(), 0600);
    controller = net.start("ctrl",
                           {bin, "run", "--scenario", "scenario.json", "--speed", "10", "--for", "3000",
                            "--events-out", "events.jsonl", "--listen", net.address("ctrl") + ":7411",
                            "--cluster", "c1", "--cluster-secret-file", "secret", "--tls-ca", "ca.pem",
                            "--tls-cert", "ctrl.pem", "--tls-key", "ctrl.key"},
                           "controller.log");
    for (const char* h : {"A", "B", "N", "M"}) agents[h] = start_agent(h);
  }

  int start_agent(const std::string& h, const std::string& cert = {}, const std::string& secret = "secret",
                  const std::string& ca = "ca.pem") {
    std::string c = cert.empty() ? h : cert;
    return net.start(h == "X" ? "X" : h,
                     {bin, "agent", "--controller", net.address("ctrl") + ":7411", "--host", h == "X" ? "A" : h,
                      "--scenario", "scenario.json", "--listen", net.address(h) + ":7412", "--cluster", "c1",
                      "--cluster-secret-file", secret, "--tls-ca", ca, "--tls-cert", c + ".pem", "--tls-key",
                      c + ".key", "--metrics", net.address(h == "X" ? "X" : h) + ":7413"},
                     "agent-" + h + ".log");
  }

  std::vector<nlohmann::json> events() const {
    std::vector<nlohmann::json> out;
    std::istringstream in(slurp(net.dir() + "/events.jsonl"));
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) out.push_back(nlohmann::json::parse(line));
    return out;
  }

  std::size_t count(const std::string& event, const std::function<bool(const nlohmann::json&)>& match =
                                                  [](const nlohmann::json&) { return true; }) const {
    std::size_t n = 0;
    for (const auto& e : events())
      if (e["event"] == event && match(e)) ++n;
    return n;
  }

  static bool eventually(const std::function<bool()>& cond, std::chrono::seconds bound = std::chrono::seconds(60)) {
    return memlend::test::eventually(cond, bound);
  }

  bool leases_granted() {
    return eventually([&] {
      return count("lease_granted", [](const auto& e) { return e["vm"] == "VM2" && e["donor"] == "B"; }) == 1 &&
             count("lease_granted", [](const auto& e) { return e["vm"] == "VM4"; }) == 2;
    });
  }

  // Stops the agent of `host` politely and returns what its guest workload
  // found on `vm`'s remote memory ("" when it moved none). First it lets the
  // guest finish one more whole round of writing and checking, so that the
  // memory is checked after whatever the test did to the cluster, however
  // slowly the machine runs (a sanitizer build on a loaded CI machine).
  std::string guest(const std::string& host, const std::string& vm) {
    std::string said = "the guest workload of " + vm + " has checked its remote memory";
    auto rounds = [&] {
      std::string log = slurp(net.dir() + "/agent-" + host + ".log");
      std::size_t n = 0;
      for (auto p = log.find(said); p != std::string::npos; p = log.find(said, p + 1)) ++n;
      return n;
    };
    std::size_t before = rounds();
    eventually([&] { return rounds() > before; }, std::chrono::seconds(120));
    net.stop(agents[host]);
    std::string log = slurp(net.dir() + "/agent-" + host + ".log");
    auto at = log.find("the guest workload of " + vm + " wrote");
    return at == std::string::npos ? std::string() : log.substr(at, log.find('\n', at) - at);
  }

  // The guest read back every byte it wrote, and read some.
  static bool intact(const std::string& line) {
    return line.find(": 0 words wrong") != std::string::npos && line.find("read back 0 KiB") == std::string::npos;
  }

  // Lines where an agent says the controller told it of a lease it neither
  // lends nor borrows through.
  std::string told_of_others_leases() const {
    std::string out;
    for (const char* h : {"A", "B", "N", "M"}) {
      std::istringstream in(slurp(net.dir() + "/agent-" + h + ".log"));
      for (std::string line; std::getline(in, line);)
        if (line.find("not party to") != std::string::npos) out += line + "\n";
    }
    return out;
  }

  std::string logs() const {
    std::string out = "--- controller\n" + slurp(net.dir() + "/controller.log");
    for (const char* h : {"A", "B", "N", "M", "X"})
      out += std::string("--- agent ") + h + "\n" + slurp(net.dir() + "/agent-" + h + ".log");
    return out;
  }

  // Runs pool_tool from the controller's namespace against `host`'s data
  // path and returns its output once it has exited.
  std::string pool_tool(const std::string& host, const std::vector<std::string>& op) {
    std::string log = "pool-tool-" + std::to_string(++tool_runs) + ".log";
    std::vector<std::string> argv{POOL_TOOL, host + ".pem", host + ".key", net.address(host) + ":7412"};
    argv.insert(argv.end(), op.begin(), op.end());
    int pid = net.start("ctrl", argv, log);
    eventually([&] { return !net.alive(pid); }, std::chrono::seconds(30));
    return slurp(net.dir() + "/" + log);
  }
  // The agent of `host`'s /metrics, scraped from the controller's namespace.
  std::string agent_metrics(const std::string& host) {
    std::string log = "scrape-" + std::to_string(++tool_runs) + ".log";
    int pid = net.start("ctrl", {SCRAPE_TOOL, net.address(host), "7413", "/metrics"}, log);
    eventually([&] { return !net.alive(pid); }, std::chrono::seconds(30));
    return slurp(net.dir() + "/" + log);
  }
  NetnsCluster net;
  int tool_runs = 0;
  int controller = 0;
  std::map<std::string, int> agents;
};

auto donor(const std::string& vm, const std::string& d) {
  return [=](const nlohmann::json& e) { return e["vm"] == vm && e["donor"] == d; };
}

}  // namespace

BOOST_AUTO_TEST_CASE(fig2_and_fig3_across_four_namespaces, *utf::precondition(namespaces_available)) {
  Cluster c;
  BOOST_TEST_REQUIRE(c.leases_granted(), c.logs());
  BOOST_TEST(c.count("lease_granted", [](const auto& e) { return e["vm"] == "VM2" && e["mib"] == 49152; }) == 1u);
  BOOST_TEST(c.count("lease_granted", donor("VM4", "B")) == 1u);
  BOOST_TEST(c.count("lease_granted", donor("VM4", "M")) == 1u);
  BOOST_TEST(c.count("mirror_created") == 2u);
  BOOST_TEST(c.count("unsatisfied") == 0u);
  // Real bytes crossed the namespaces: each recipient's guest checked them.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  // Each agent serves the metrics of its own data path: the recipients fault
  // on remote memory, a donor maps none.
  auto value = [](const std::string& scrape, const std::string& series) {
    auto at = scrape.find("\n" + series + " ");
    return at == std::string::npos ? -1.0 : std::stod(scrape.substr(at + series.size() + 2));
  };
  std::string a = c.agent_metrics("A"), b = c.agent_metrics("B");
  BOOST_TEST(value(a, "memlend_datapath_page_faults_total{transport=\"tcp\"}") > 0, a);
  BOOST_TEST(value(b, "memlend_datapath_page_faults_total{transport=\"tcp\"}") == 0, b);
  std::string vm2 = c.guest("A", "VM2"), vm4 = c.guest("N", "VM4");
  BOOST_TEST(Cluster::intact(vm2), vm2 << "\n" << c.logs());
  BOOST_TEST(Cluster::intact(vm4), vm4 << "\n" << c.logs());
  // VM4 borrows from B and M: neither learnt of the other's lease, and A,
  // party to none of VM4's, of neither.
  BOOST_TEST(c.told_of_others_leases().empty(), c.logs());
}

// Every node holds the cluster's secret and a certificate of its CA; that
// must not let one of them speak for another host. Before, an agent for
// CN=evil joining as B took B's place: B counted as failed, B's next grants
// went to the impostor's pool, and the join handed it every lease's secret.
BOOST_AUTO_TEST_CASE(an_impostor_with_a_valid_certificate_for_another_name_is_refused,
                     *utf::precondition(namespaces_available)) {
  Cluster c;
  BOOST_TEST_REQUIRE(c.leases_granted(), c.logs());
  c.net.make_certificates({"evil"});
  int impostor = c.net.start("X",
                             {bin, "agent", "--controller", c.net.address("ctrl") + ":7411", "--host", "B",
                              "--scenario", "scenario.json", "--listen", c.net.address("X") + ":7412", "--cluster",
                              "c1", "--cluster-secret-file", "secret", "--tls-ca", "ca.pem", "--tls-cert",
                              "evil.pem", "--tls-key", "evil.key"},
                             "agent-X.log");
  BOOST_TEST_REQUIRE(c.eventually([&] { return !c.net.alive(impostor); }, std::chrono::seconds(30)), c.logs());
  BOOST_TEST(c.net.exit_status(impostor) == 2);
  std::string said = slurp(c.net.dir() + "/agent-X.log");
  BOOST_TEST(said.find("refused") != std::string::npos, said);
  BOOST_TEST(said.find("joined cluster") == std::string::npos, said);
  std::string ctl = slurp(c.net.dir() + "/controller.log");
  BOOST_TEST(ctl.find("refused an agent claiming host \"B\": its certificate is for evil, not B") != std::string::npos,
             ctl);
  // B itself never noticed: still joined once, never taken for dead.
  std::size_t joins = 0;
  for (auto p = ctl.find("agent for B joined"); p != std::string::npos; p = ctl.find("agent for B joined", p + 1))
    ++joins;
  BOOST_TEST(joins == 1u, ctl);
  BOOST_TEST(c.count("donor_failed") == 0u);
  BOOST_TEST(slurp(c.net.dir() + "/agent-B.log").find("lost the controller") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(outsiders_cannot_join, *utf::precondition(namespaces_available)) {
  Cluster c;
  BOOST_TEST_REQUIRE(c.eventually([&] { return slurp(c.net.dir() + "/controller.log").find("M is up") !=
                                               std::string::npos; }),
                     c.logs());
  // A stranger with a certificate from a CA of its own: TLS refuses it.
  c.net.make_certificates({"stranger"}, "otherca");
  int stranger = c.start_agent("X", "stranger", "secret", "otherca.pem");
  // Give it time to try: several connection attempts pass in these seconds.
  std::this_thread::sleep_for(std::chrono::seconds(4));
  BOOST_TEST(c.net.alive(stranger));  // still knocking, never let in
  std::string ctl = slurp(c.net.dir() + "/controller.log");
  BOOST_TEST(ctl.find("agent for A joined") != std::string::npos);
  // Only the four real agents ever joined.
  std::size_t joins = 0;
  for (std::size_t p = ctl.find("joined"); p != std::string::npos; p = ctl.find("joined", p + 1)) ++joins;
  BOOST_TEST(joins == 4u, c.logs());
  BOOST_TEST(slurp(c.net.dir() + "/agent-X.log").find("joined cluster") == std::string::npos);
  c.net.kill9(stranger);
}

BOOST_AUTO_TEST_CASE(a_wrong_secret_is_refused_with_status_2, *utf::precondition(namespaces_available)) {
  Cluster c;
  std::ofstream(c.net.dir() + "/guess") << "not the cluster secret at all\n";
  ::chmod((c.net.dir() + "/guess").c_str(), 0600);
  int intruder = c.net.start("X",
                             {bin, "agent", "--controller", c.net.address("ctrl") + ":7411", "--host", "A",
                              "--scenario", "scenario.json", "--cluster", "c1", "--cluster-secret-file", "guess",
                              "--tls-ca", "ca.pem", "--tls-cert", "A.pem", "--tls-key", "A.key"},
                             "intruder.log");
  BOOST_TEST_REQUIRE(c.eventually([&] { return !c.net.alive(intruder); }, std::chrono::seconds(30)), c.logs());
  BOOST_TEST(slurp(c.net.dir() + "/intruder.log").find("refused") != std::string::npos);
  BOOST_TEST(slurp(c.net.dir() + "/controller.log").find("does not hold the cluster's secret") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_killed_donor_fails_over_then_rehomes, *utf::precondition(namespaces_available)) {
  Cluster c;
  BOOST_TEST_REQUIRE(c.leases_granted(), c.logs());
  c.net.kill9(c.agents["M"]);
  BOOST_TEST_REQUIRE(c.eventually([&] { return c.count("lease_rehomed") == 1; }), c.logs());
  BOOST_TEST(c.count("donor_failed", [](const auto& e) { return e["host"] == "M"; }) == 1u);
  BOOST_TEST(c.count("failover_to_mirror", donor("VM4", "M")) == 1u);
  BOOST_TEST(c.count("lease_rehomed", donor("VM4", "B")) == 1u);
  // No byte lost: the guest on N went on reading through the mirror and the new donor.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  std::string vm4 = c.guest("N", "VM4");
  BOOST_TEST(Cluster::intact(vm4), vm4 << "\n" << c.logs());
  // It comes back as a new incarnation and may lend again.
  c.agents["M"] = c.start_agent("M");
  BOOST_TEST(c.eventually([&] {
    std::string log = slurp(c.net.dir() + "/controller.log");
    std::size_t joins = 0;
    for (auto p = log.find("agent for M joined"); p != std::string::npos; p = log.find("agent for M joined", p + 1))
      ++joins;
    return joins == 2;
  }, std::chrono::seconds(30)), c.logs());
}

BOOST_AUTO_TEST_CASE(a_partitioned_donor_is_fenced_when_it_returns, *utf::precondition(namespaces_available)) {
  Cluster c;
  BOOST_TEST_REQUIRE(c.leases_granted(), c.logs());
  c.net.partition("M", true);
  BOOST_TEST_REQUIRE(c.eventually([&] { return c.count("lease_rehomed", donor("VM4", "B")) == 1; }), c.logs());
  c.net.partition("M", false);
  // Same process, same incarnation: it rejoins and drops what was re-homed.
  BOOST_TEST(c.eventually([&] {
    return slurp(c.net.dir() + "/agent-M.log").find("drops lease") != std::string::npos;
  }), c.logs());
  BOOST_TEST(c.net.alive(c.agents["M"]));
  BOOST_TEST(c.count("lease_granted", donor("VM4", "M")) + c.count("lease_rehomed", donor("VM4", "M")) == 1u);
  std::string vm4 = c.guest("N", "VM4");
  BOOST_TEST(Cluster::intact(vm4), vm4 << "\n" << c.logs());
}

BOOST_AUTO_TEST_CASE(a_dead_recipient_lets_its_donors_reclaim, *utf::precondition(namespaces_available)) {
  Cluster c;
  BOOST_TEST_REQUIRE(c.leases_granted(), c.logs());
  c.net.kill9(c.agents["N"]);
  BOOST_TEST_REQUIRE(c.eventually([&] { return c.count("memory_reclaimed") == 2; }), c.logs());
  BOOST_TEST(c.count("memory_reclaimed", donor("VM4", "B")) == 1u);
  BOOST_TEST(c.count("memory_reclaimed", donor("VM4", "M")) == 1u);
  BOOST_TEST(c.count("mirror_deleted", [](const auto& e) { return e["vm"] == "VM4"; }) == 1u);
  BOOST_TEST(c.count("donor_failed") == 0u);
}

BOOST_AUTO_TEST_CASE(a_killed_controller_comes_back_from_its_store, *utf::precondition(namespaces_available)) {
  Cluster c;
  BOOST_TEST_REQUIRE(c.leases_granted(), c.logs());
  std::size_t events_before = c.events().size();
  // B lends VM2 48 GiB and VM4 8 GiB, 56 MiB of real memory at the test's
  // scale. A further grant from its pool, made the way the controller makes
  // one and recorded nowhere: what a controller killed between a grant and
  // its commit leaves behind.
  auto granted = [&] {
    std::string out = c.pool_tool("B", {"stats"});
    return out.rfind("granted_bytes ", 0) == 0 ? std::stoll(out.substr(14)) : -1LL;
  };
  const long long mib = 1024 * 1024;
  BOOST_TEST_REQUIRE(granted() == 56 * mib, c.logs());
  std::string orphan = c.pool_tool("B", {"grant", "4"});
  BOOST_TEST_REQUIRE(orphan.rfind("granted ", 0) == 0u, orphan);
  std::string orphan_id = orphan.substr(8, orphan.find('\n') - 8);
  BOOST_TEST_REQUIRE(granted() == 60 * mib);
  c.net.kill9(c.controller);
  // Without their controller the agents go on serving: the donors keep the
  // leases in their pools and the recipients' guests keep reading them.
  BOOST_TEST_REQUIRE(c.eventually([&] {
    return slurp(c.net.dir() + "/agent-A.log").find("lost the controller") != std::string::npos;
  }, std::chrono::seconds(30)), c.logs());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  BOOST_TEST(c.net.alive(c.agents["B"]));
  // The same command on the same database: it resumes and the agents rejoin it.
  std::rename((c.net.dir() + "/controller.log").c_str(), (c.net.dir() + "/controller-1.log").c_str());
  c.controller = c.net.start("ctrl",
                             {bin, "run", "--scenario", "scenario.json", "--speed", "10", "--for", "3000",
                              "--events-out", "events.jsonl", "--listen", c.net.address("ctrl") + ":7411",
                              "--cluster", "c1", "--cluster-secret-file", "secret", "--tls-ca", "ca.pem",
                              "--tls-cert", "ctrl.pem", "--tls-key", "ctrl.key"},
                             "controller.log");
  BOOST_TEST_REQUIRE(c.eventually([&] {
    std::string log = slurp(c.net.dir() + "/controller.log");
    for (const char* h : {"A", "B", "N", "M"})
      if (log.find(std::string("agent for ") + h + " joined") == std::string::npos) return false;
    return true;
  }), c.logs());
  std::string log = slurp(c.net.dir() + "/controller.log");
  BOOST_TEST(log.find("resuming from") != std::string::npos, log);
  // Reconciled, not redone: no lease granted twice, none dropped, no host
  // taken for dead, and the event log carries on without a gap.
  std::this_thread::sleep_for(std::chrono::seconds(3));
  BOOST_TEST(c.events().size() >= events_before);
  BOOST_TEST(c.count("lease_granted", [](const auto& e) { return e["vm"] == "VM2"; }) == 1u, c.logs());
  BOOST_TEST(c.count("lease_granted", [](const auto& e) { return e["vm"] == "VM4"; }) == 2u, c.logs());
  BOOST_TEST(c.count("donor_failed") == 0u);
  BOOST_TEST(c.count("lease_released") == 0u);
  BOOST_TEST(c.count("failover_to_mirror") == 0u);
  for (const char* h : {"A", "B", "N", "M"})
    BOOST_TEST(slurp(c.net.dir() + "/agent-" + h + ".log").find("drops lease") == std::string::npos, h);
  // The unrecorded grant went back to B's pool when B joined the new
  // controller, and nothing else did.
  BOOST_TEST(slurp(c.net.dir() + "/agent-B.log").find("frees grant " + orphan_id + " of its pool") != std::string::npos,
             c.logs());
  BOOST_TEST(c.eventually([&] { return granted() == 56 * mib; }, std::chrono::seconds(30)), granted());
  for (const char* h : {"A", "N", "M"})
    BOOST_TEST(slurp(c.net.dir() + "/agent-" + h + ".log").find("frees grant") == std::string::npos, h);
  // Each rejoining agent was handed the leases it is party to, and no other:
  // A borrows through one, N through two, B lends two, M one.
  for (auto [h, n] : {std::pair{"A", "1 lease\n"}, {"N", "2 leases\n"}, {"B", "2 leases\n"}, {"M", "1 lease\n"}})
    BOOST_TEST(slurp(c.net.dir() + "/agent-" + h + ".log").find(std::string("it lends or borrows through ") + n) !=
                   std::string::npos,
               h);
  BOOST_TEST(c.told_of_others_leases().empty(), c.logs());
  // Not a byte lost across the controller's death.
  std::string vm2 = c.guest("A", "VM2"), vm4 = c.guest("N", "VM4");
  BOOST_TEST(Cluster::intact(vm2), vm2 << "\n" << c.logs());
  BOOST_TEST(Cluster::intact(vm4), vm4 << "\n" << c.logs());
}
