// No single point of failure: three nodes each run `memlend run` with a
// member of the dqlite cluster that keeps the store, each in a network
// namespace of its own, and the controller runs on the member that leads.
// Two agents of real nodes (the exec backend) join it through the list of
// all three. The leader is killed with kill -9 in the middle of the work
// (or every member is, and all start again): another member leads (or one
// does), its controller resumes from the replicated store, the agents find
// it, the lease lent before goes on untouched (never unplugged, never
// granted twice), and the new controller decides anew. Or the leader is
// cut off from the other members (its whole link, or only its traffic to
// them while the agents still reach it): it steps down and its controller
// stops, the majority elects and resumes, and once the cut is mended the
// old leader follows and nothing is disrupted. Or simulated hosts move real
// bytes for a VM's borrowed memory, and its guest finds them intact after
// the leader's death. Or agents that met a later leader refuse a
// controller whose epoch is below it.
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
#include <set>
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
  // With `rogue`, a sixth namespace X where a controller of its own may
  // listen, first in the agents' list of controllers.
  explicit Failover(bool rogue = false)
      : net(rogue ? std::vector<std::string>{"c1", "c2", "c3", "A", "B", "X"}
                  : std::vector<std::string>{"c1", "c2", "c3", "A", "B"}),
        rogue(rogue) {
    net.make_certificates({"c1", "c2", "c3", "A", "B", "X"});
    std::ofstream(net.dir() + "/settings.json") << open_settings;
    std::ofstream(net.dir() + "/secret") << "a cluster secret of some length\n";
    ::chmod((net.dir() + "/secret").c_str(), 0600);
    make_node(hooks("A"), "A", 16384, 0, "web", 50);
    make_node(hooks("B"), "B", 65536, 60000, "", 0);
  }

  fs::path hooks(const std::string& h) const { return fs::path(net.dir()) / ("hooks-" + h); }
  // A member's log is that of its process now: a member started again logs
  // to a file of its own, so what its first process said is not taken for it.
  std::string log_name(const std::string& node) const {
    auto it = starts.find(node);
    return node + (it == starts.end() || it->second <= 1 ? "" : "-" + std::to_string(it->second)) + ".log";
  }
  std::string log_of(const std::string& node) const { return slurp(net.dir() + "/" + log_name(node)); }

  // Member i of the store; 1 starts the cluster, the others join through it.
  // Started again, it resumes from its --replica-dir.
  int start_member(int i) {
    std::string name = "c" + std::to_string(i);
    ++starts[name];
    std::vector<std::string> argv = {
        bin, "run", "--scenario", scenario, "--events-out", "events-" + name + ".jsonl", "--metrics", "off",
        "--listen", net.address(name) + ":7411", "--cluster", "c1", "--cluster-secret-file", "secret",
        "--tls-ca", "ca.pem", "--tls-cert", name + ".pem", "--tls-key", name + ".key",
        "--replica-id", std::to_string(i), "--replica-address", net.address(name) + ":7420",
        "--replica-dir", "replica-" + name, "--replica-latency-ms", "20"};
    if (i != 1) {
      argv.push_back("--replica-join");
      argv.push_back(net.address("c1") + ":7420");
    }
    argv.insert(argv.end(), run_extra.begin(), run_extra.end());
    return pid[name] = net.start(name, argv, log_name(name));
  }

  // Where agents look for the controller: the members, after X when there is one.
  std::string controller_list() const {
    std::string out = rogue ? net.address("X") + ":7411" : "";
    for (const auto& m : members) out += (out.empty() ? "" : ",") + net.address(m) + ":7411";
    return out;
  }

  // An agent of a simulated host of `scenario`, whose guest workload writes
  // and checks the memory its VM borrows (as in cluster_test).
  int start_sim_agent(const std::string& h) {
    std::string controllers = controller_list();
    return pid[h] = net.start(h,
                              {bin, "agent", "--controller", controllers, "--host", h, "--scenario", scenario,
                               "--listen", net.address(h) + ":7412", "--cluster", "c1", "--cluster-secret-file",
                               "secret", "--tls-ca", "ca.pem", "--tls-cert", h + ".pem", "--tls-key", h + ".key"},
                              h + ".log");
  }

  // How many rounds of writing and checking the guest workload of `vm` on
  // `h` has finished.
  std::size_t guest_rounds(const std::string& h, const std::string& vm) const {
    std::string said = "the guest workload of " + vm + " has checked its remote memory", log = log_of(h);
    std::size_t n = 0;
    for (auto at = log.find(said); at != std::string::npos; at = log.find(said, at + 1)) ++n;
    return n;
  }

  int start_agent(const std::string& h) {
    std::string controllers = controller_list();
    return pid[h] = net.start(h,
                              {bin, "agent", "--controller", controllers, "--platform", "exec", "--hooks-dir",
                               hooks(h).string(), "--listen", net.address(h) + ":7412", "--cluster", "c1",
                               "--cluster-secret-file", "secret", "--tls-ca", "ca.pem", "--tls-cert", h + ".pem",
                               "--tls-key", h + ".key"},
                              h + ".log");
  }

  // c1 leads, c2 and c3 join it as voters, and both agents start.
  void start_cluster() {
    start_member(1);
    bool first = eventually([&] { return leader() == "c1"; }, 60s);
    BOOST_TEST_REQUIRE(first, logs());
    start_member(2);
    start_member(3);
    bool joined = eventually([&] {
      return log_of("c2").find("joined as a voter") != std::string::npos &&
             log_of("c3").find("joined as a voter") != std::string::npos;
    }, 60s);
    BOOST_TEST_REQUIRE(joined, logs());
    start_agent("A");
    start_agent("B");
  }

  // The first leader lends web 256 MiB of B's, and A's platform plugs it;
  // its controller raised the leadership epoch to 1 and told the agents.
  void first_lease() {
    bool lent = eventually([&] { return count("c1", "lease_granted") == 1 && plugs("A").size() == 1; }, 90s);
    BOOST_TEST_REQUIRE(lent, logs());
    BOOST_TEST(last_epoch("A") == 1, logs());
    BOOST_TEST(log_of("c1").find("VM web appeared on A") != std::string::npos, logs());
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

  // The leader after the one before died: another member, or any once all
  // were started again; its controller has resumed from the replicated store
  // and both agents have joined it.
  std::string resumed(const std::function<bool(const std::string&)>& may_lead) {
    std::string next;
    bool moved = eventually([&] {
      next = leader();
      return !next.empty() && may_lead(next);
    }, 60s);
    BOOST_TEST_REQUIRE(moved, logs());
    bool back = eventually([&] {
      return log_of(next).find("resuming from replicated store memlend") != std::string::npos && rejoined("A") &&
             rejoined("B");
    }, 90s);
    BOOST_TEST_REQUIRE(back, logs());
    // What it resumed: the one lease lent before and web's mirror; its hosts
    // and VM came from the store too, none joined or appeared anew.
    std::string log = log_of(next);
    BOOST_TEST(log.find(": 1 leases, 1 mirrors, 0 recommendations") != std::string::npos, logs());
    for (const char* anew : {"host A joined", "host B joined", "VM web appeared"})
      BOOST_TEST(log.find(anew) == std::string::npos, logs());
    // The new leader's first transaction raised it: a deposed leader's epoch
    // is below what the agents have now seen, and they would refuse it.
    for (const auto& h : {"A", "B"}) BOOST_TEST(last_epoch(h) >= 2, logs());
    return next;
  }

  // An agent that lost its controller found one again.
  bool rejoined(const std::string& h) const {
    std::string log = log_of(h);
    auto lost = log.find("lost the controller");
    return lost != std::string::npos && log.find("joined cluster c1", lost) != std::string::npos;
  }

  // The controller on `leader` decides: web's guest is short again, by 256
  // MiB more, and is lent them (its `leases`th lease). The leases before went
  // on through it all: granted once, never released, reclaimed or unplugged.
  void decides_and_undid_nothing(const std::string& leader, std::size_t leases = 2) {
    short_again(leases);
    bool decided =
        eventually([&] { return count(leader, "lease_granted") == leases && plugs("A").size() == leases; }, 90s);
    BOOST_TEST_REQUIRE(decided, logs());
    BOOST_TEST(count(leader, "memory_reclaimed") == 0u, logs());
    BOOST_TEST(count(leader, "lease_released") == 0u, logs());
    for (const auto& p : plugs("A")) BOOST_TEST(p.rfind("attach web ", 0) == 0u, p);
    BOOST_TEST(count(leader, "lease_granted") == leases, logs());
  }

  // web's guest lacks 50 MiB with `leases - 1` leases of 256 MiB plugged.
  void short_again(std::size_t leases) {
    make_node(hooks("A"), "A", 16384, 0, "web", 50 - 256 * static_cast<std::int64_t>(leases - 1));
  }

  // What a memlend command run in `node`'s namespace printed, once it ended.
  nlohmann::json run_json(const std::string& node, std::vector<std::string> args) {
    std::string out = "run-" + std::to_string(++runs) + ".out";
    args.insert(args.begin(), bin);
    // The store's members speak TLS: support tooling is given the node's own files.
    args.insert(args.end(), {"--tls-ca", "ca.pem", "--tls-cert", node + ".pem", "--tls-key", node + ".key"});
    int p = net.start(node, args, out);
    bool ended = eventually([&] { return !net.alive(p); }, 60s);
    BOOST_TEST_REQUIRE(ended, out);
    std::string text = slurp(net.dir() + "/" + out);
    auto brace = text.find('{');
    return nlohmann::json::parse(brace == std::string::npos ? std::string("null") : text.substr(brace), nullptr,
                                 false);
  }

  // Whether `node`'s member, asked from its own namespace, names `leader`
  // as the one that leads, and every member answers it.
  bool sees_leader(const std::string& node, const std::string& leader) {
    auto j = run_json(node, {"members", "--json", "--replica", net.address(node) + ":7420"});
    if (!j.is_object() || !j.contains("members") || j["members"].size() != members.size()) return false;
    for (const auto& m : j["members"]) {
      bool is_leader = m["address"] == net.address(leader) + ":7420";
      if (m["leads"] != is_leader || m["answers"] != true || m["role"] != "voter") return false;
    }
    return true;
  }

  // How many times an agent lost its controller.
  std::size_t losses(const std::string& h) const {
    std::size_t n = 0;
    std::string log = log_of(h);
    for (auto at = log.find("lost the controller"); at != std::string::npos;
         at = log.find("lost the controller", at + 1))
      ++n;
    return n;
  }

  // Events as a member's --events-out has them: a controller that resumes
  // brings its file up to the replicated store first.
  std::vector<nlohmann::json> events(const std::string& member) const {
    std::vector<nlohmann::json> out;
    for (const auto& line : lines_of(slurp(net.dir() + "/events-" + member + ".jsonl")))
      out.push_back(nlohmann::json::parse(line));
    return out;
  }

  std::size_t count(const std::string& member, const std::string& event, const std::string& vm = "web") const {
    std::size_t n = 0;
    for (const auto& e : events(member))
      if (e["event"] == event && e["vm"] == vm) ++n;
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

  // Every log, the members' earlier processes' too.
  std::string logs() const {
    std::string out;
    for (const auto& n : {"A", "B", "c1", "c2", "c3"}) {
      auto it = starts.find(n);
      int last = it == starts.end() ? 1 : it->second;
      for (int k = 1; k <= last; ++k) {
        std::string name = std::string(n) + (k == 1 ? "" : "-" + std::to_string(k)) + ".log";
        out += "\n--- " + name + "\n" + slurp(net.dir() + "/" + name);
      }
    }
    return out;
  }

  // Stops every process still running.
  void stop_all() {
    for (const auto& [name, p] : pid)
      if (net.alive(p)) net.stop(p);
  }

  NetnsCluster net;
  bool rogue = false;
  std::string scenario = "settings.json";  // what the members run
  std::vector<std::string> run_extra;      // more of memlend run's flags
  std::map<std::string, int> pid;     // of each node's process now
  std::map<std::string, int> starts;  // how many times each member was started
  int runs = 0;                       // commands run to ask the cluster
};

}  // namespace

BOOST_AUTO_TEST_CASE(the_leaders_death_moves_the_controller_and_loses_no_decision,
                     *utf::precondition(namespaces_available)) {
  Failover f;
  f.start_cluster();
  f.first_lease();
  // The leader's node dies.
  f.net.kill9(f.pid["c1"]);
  std::string next = f.resumed([](const std::string& m) { return m != "c1"; });
  f.decides_and_undid_nothing(next);
  f.stop_all();
}

// Every member dies at once with a lease lent (kill -9 of all three), and
// all start again from their --replica-dir: a leader is elected, its
// controller resumes the same lease at a higher epoch, the agents (which
// kept serving) join it, and it decides again.
BOOST_AUTO_TEST_CASE(all_members_killed_at_once_start_again_with_the_same_state,
                     *utf::precondition(namespaces_available)) {
  Failover f;
  f.start_cluster();
  f.first_lease();
  for (const auto& m : members) f.net.kill9(f.pid[m]);
  for (int i = 1; i <= 3; ++i) f.start_member(i);
  std::string next = f.resumed([](const std::string&) { return true; });
  f.decides_and_undid_nothing(next);
  f.stop_all();
}

// The leader c1 is cut off from the other members (`cut(true)`) after it
// lent, then joined again (`cut(false)`): the majority elects another
// member, whose controller resumes; c1's controller stops as its member no
// longer leads; the agents join the new leader, which decides. Healed, c1
// follows the new leader, which goes on leading and deciding; the agents
// stay with it; nothing is granted twice, released or unplugged, and the
// store holds the leases the new leader's events say it granted.
void cut_off_and_healed(Failover& f, const std::function<void(bool cut)>& cut) {
  f.start_cluster();
  f.first_lease();
  cut(true);
  // Short at once: c1's controller may see it before it stops, and what it
  // then decides it cannot record, so no agent acts on it.
  f.short_again(2);
  std::string next = f.resumed([](const std::string& m) { return m != "c1"; });
  // libraft's leader steps down when it no longer hears from a quorum: were
  // it not so, c1's controller would keep running (refused by the agents,
  // recording nothing).
  bool stepped_down = eventually([&] { return f.log_of("c1").find("no longer leads") != std::string::npos; }, 60s);
  BOOST_TEST_REQUIRE(stepped_down, f.logs());
  f.decides_and_undid_nothing(next, 2);
  std::map<std::string, std::pair<std::size_t, int>> before;
  for (const auto& h : {"A", "B"}) before[h] = {f.losses(h), f.last_epoch(h)};

  cut(false);
  bool follows = eventually([&] { return f.sees_leader("c1", next); }, 60s);
  BOOST_TEST_REQUIRE(follows, f.logs());
  f.decides_and_undid_nothing(next, 3);
  BOOST_TEST(f.leader() == next, f.logs());
  BOOST_TEST(f.log_of(next).find("no longer leads") == std::string::npos, f.logs());
  std::string c1 = f.log_of("c1");
  BOOST_TEST(c1.rfind("leads; the controller starts here") < c1.rfind("no longer leads"), f.logs());
  BOOST_TEST(c1.rfind("follows; the controller runs on the leader") > c1.rfind("no longer leads"), f.logs());
  for (const auto& h : {"A", "B"}) {
    BOOST_TEST(f.losses(h) == before[h].first, f.logs());
    BOOST_TEST(f.last_epoch(h) == before[h].second, f.logs());
  }
  // c1 recorded its one lease, and none once cut off.
  BOOST_TEST(f.count("c1", "lease_granted") == 1u, f.logs());
  // The store's leases are those the new leader's events say were granted
  // (an event names a lease by its VM, donor and size), and all still lent.
  std::multiset<std::string> granted, stored;
  for (const auto& e : f.events(next))
    if (e["event"] == "lease_granted") granted.insert(e["vm"].dump() + e["donor"].dump() + e["mib"].dump());
  std::string everyone;
  for (const auto& m : members) everyone += (everyone.empty() ? "" : ",") + f.net.address(m) + ":7420";
  auto state = f.run_json("c1", {"state", "--json", "--replica", everyone});
  BOOST_TEST_REQUIRE(state.is_object(), f.logs());
  for (const auto& l : state["leases"]) {
    BOOST_TEST(l["state"] == "active", l.dump());
    stored.insert(l["vm"].dump() + l["donor"].dump() + l["mib"].dump());
  }
  BOOST_TEST(granted.size() == 3u);
  BOOST_TEST((stored == granted), state["leases"].dump());
  f.stop_all();
}

BOOST_AUTO_TEST_CASE(a_partitioned_leader_steps_down_and_healing_disrupts_nothing,
                     *utf::precondition(namespaces_available)) {
  Failover f;
  cut_off_and_healed(f, [&](bool cut) { f.net.partition("c1", cut); });
}

// c1 loses only the other members (its packets to them dropped) while the
// agents still reach it: its controller must stop all the same, as its member
// no longer leads, and the agents move to the new leader.
BOOST_AUTO_TEST_CASE(a_leader_cut_from_the_members_only_steps_down_and_the_agents_move,
                     *utf::precondition(namespaces_available)) {
  Failover f;
  cut_off_and_healed(f, [&](bool cut) {
    for (const auto& m : {"c2", "c3"}) f.net.cut_between("c1", m, cut);
  });
}

// The guests' bytes through a failover: simulated hosts whose agents move
// real bytes (TCP between namespaces, the data path's own) for the memory
// their VMs borrow, and a guest workload on A that writes and checks it.
// The leader is killed with kill -9 while the guest reads through its lease:
// the next leader resumes the lease, the agents keep serving it throughout,
// and the guest, a whole round after the agents joined the new leader,
// finds every word it wrote.
BOOST_AUTO_TEST_CASE(the_guests_bytes_stay_intact_through_the_leaders_death,
                     *utf::precondition(namespaces_available)) {
  Failover f;
  std::ofstream(f.net.dir() + "/guests.json") << R"({
    "settings": { "sample_period_s": 10, "detect_samples": 3, "migrate_after_s": 100000 },
    "hosts": [ { "name": "A", "memory_mib": 16384,  "cpu_mhz": 32000 },
               { "name": "B", "memory_mib": 131072, "cpu_mhz": 8000 } ],
    "vms": [ { "name": "VM2", "host": "A", "memory_mib": 16384, "cpu_mhz": 16000 } ],
    "events": [ { "at_s": 20, "vm": "VM2", "memory_mib": 65536 } ] })";
  f.scenario = "guests.json";
  f.run_extra = {"--speed", "10", "--for", "100000"};
  f.start_member(1);
  BOOST_TEST_REQUIRE(eventually([&] { return f.leader() == "c1"; }, 60s), f.logs());
  f.start_member(2);
  f.start_member(3);
  bool joined = eventually([&] {
    return f.log_of("c2").find("joined as a voter") != std::string::npos &&
           f.log_of("c3").find("joined as a voter") != std::string::npos;
  }, 60s);
  BOOST_TEST_REQUIRE(joined, f.logs());
  f.start_sim_agent("A");
  f.start_sim_agent("B");

  // B lends VM2 48 GiB and A's guest workload has read its memory back once.
  bool lent = eventually([&] {
    return f.count("c1", "lease_granted", "VM2") == 1 && f.guest_rounds("A", "VM2") >= 1;
  }, 120s);
  BOOST_TEST_REQUIRE(lent, f.logs());

  f.net.kill9(f.pid["c1"]);
  std::string next;
  bool back = eventually([&] {
    next = f.leader();
    return !next.empty() && next != "c1" &&
           f.log_of(next).find("resuming from replicated store memlend") != std::string::npos &&
           f.rejoined("A") && f.rejoined("B");
  }, 120s);
  BOOST_TEST_REQUIRE(back, f.logs());
  BOOST_TEST(f.log_of(next).find(": 1 leases") != std::string::npos, f.logs());

  // A whole round of the guest's after the agents joined the new leader,
  // then A's agent stops and says what its guest found.
  std::size_t rounds = f.guest_rounds("A", "VM2");
  BOOST_TEST_REQUIRE(eventually([&] { return f.guest_rounds("A", "VM2") > rounds; }, 120s), f.logs());
  f.net.stop(f.pid["A"]);
  std::string log = f.log_of("A");
  auto at = log.find("the guest workload of VM2 wrote");
  BOOST_TEST_REQUIRE(at != std::string::npos, f.logs());
  std::string wrote = log.substr(at, log.find('\n', at) - at);
  BOOST_TEST_MESSAGE(wrote);
  BOOST_TEST(wrote.find(": 0 words wrong") != std::string::npos, wrote);
  BOOST_TEST(wrote.find("read back 0 KiB") == std::string::npos, wrote);
  // The lease went on: granted once, by c1, and neither released nor lent anew.
  BOOST_TEST(f.count(next, "lease_granted", "VM2") == 1u, f.logs());
  BOOST_TEST(f.count(next, "lease_released", "VM2") == 0u, f.logs());
  BOOST_TEST(f.count(next, "memory_reclaimed", "VM2") == 0u, f.logs());
  f.stop_all();
}

// A deposed controller met by real agents: after the first failover the
// agents have joined leadership epoch 2 or above. A controller that is not
// the cluster's (its own single-node store, so its epoch is 1, as a leader
// deposed long ago would have) then listens in X, first in the agents'
// list, and the leader is killed again. Every agent tries X first, refuses
// it for its epoch, takes nothing from it and joins the next leader, which
// decides; nothing of the rogue controller's is plugged.
BOOST_AUTO_TEST_CASE(agents_refuse_a_controller_below_the_epoch_they_joined,
                     *utf::precondition(namespaces_available)) {
  Failover f(true);
  f.start_cluster();
  f.first_lease();
  f.net.kill9(f.pid["c1"]);
  std::string second = f.resumed([](const std::string& m) { return m != "c1"; });
  // c1 back as a member, so that the cluster survives one more death.
  f.start_member(1);
  BOOST_TEST_REQUIRE(eventually([&] { return f.sees_leader("c1", second); }, 60s), f.logs());

  f.pid["X"] = f.net.start(
      "X",
      {bin, "run", "--scenario", "settings.json", "--db", "rogue.db", "--events-out", "events-X.jsonl", "--metrics",
       "off", "--listen", f.net.address("X") + ":7411", "--cluster", "c1", "--cluster-secret-file", "secret",
       "--tls-ca", "ca.pem", "--tls-cert", "X.pem", "--tls-key", "X.key"},
      "X.log");
  BOOST_TEST_REQUIRE(eventually([&] { return f.log_of("X").find("running") != std::string::npos; }, 60s), f.logs());

  std::map<std::string, std::size_t> lost;
  for (const auto& h : {"A", "B"}) lost[h] = f.losses(h);
  f.net.kill9(f.pid[second]);
  std::string third;
  bool moved = eventually([&] {
    // The killed member's log still says it leads: the leader is among the others.
    third.clear();
    for (const auto& m : members) {
      std::string log = f.log_of(m);
      auto leads = log.rfind("leads; the controller starts here"), lost = log.rfind("no longer leads");
      if (m != second && leads != std::string::npos && (lost == std::string::npos || lost < leads)) third = m;
    }
    if (third.empty()) return false;
    for (const auto& h : {"A", "B"}) {
      std::string log = f.log_of(h);
      if (f.losses(h) <= lost[h] || log.rfind("joined cluster c1") < log.rfind("lost the controller")) return false;
    }
    return true;
  }, 120s);
  BOOST_TEST_REQUIRE(moved, f.logs() + "\n--- X.log\n" + f.log_of("X"));
  for (const auto& h : {"A", "B"}) {
    std::string log = f.log_of(h);
    BOOST_TEST(log.find("refused the controller at " + f.net.address("X") + ":7411: its leadership epoch 1 is below") !=
                   std::string::npos,
               log);
    BOOST_TEST(f.last_epoch(h) >= 3, log);
  }
  // Whatever X's controller made of the agents' knocks, A's platform took
  // only the leaders' two leases: decides_and_undid_nothing counts the plugs.
  f.decides_and_undid_nothing(third);
  f.stop_all();
}
