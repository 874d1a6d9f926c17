// An agent among the terms of a replicated store's controller: it joins
// through its real join path (challenge, signed hello, reply) controllers
// that each run in an actor system of their own (a node id of their own, as
// each process of a cluster has), all on CAF's test coordinator. Having
// joined a controller at one leadership epoch, it refuses one below it (a
// deposed leader): it rebuilds nothing from its reply, takes none of its
// commands, and tries the next address. One at the same epoch or above it
// joins; from then on only that controller's node commands it.
#include <boost/test/unit_test.hpp>

#include "actors/agent.hpp"
#include "fixture.hpp"
#include "tests/support/pki.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <set>

using namespace memlend;
using memlend::test::ControllerFixture;
using memlend::test::Pki;
using memlend::test::testing_config;

namespace {

const char* two_hosts = R"({
  "settings": { "sample_period_s": 5 },
  "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 32000 },
             { "name": "B", "memory_mib": 65536, "cpu_mhz": 32000 } ],
  "vms": [ { "name": "VM2", "host": "A", "memory_mib": 8192, "cpu_mhz": 1000 } ]
})";

// The same cluster, where B lends VM2 1 GiB (lease 1): what a deposed
// leader's world may say.
const char* b_lends = R"({
  "settings": { "sample_period_s": 5 },
  "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 32000 },
             { "name": "B", "memory_mib": 65536, "cpu_mhz": 32000 } ],
  "vms": [ { "name": "VM2", "host": "A", "memory_mib": 8192, "cpu_mhz": 1000,
             "remote": [ { "donor": "B", "mib": 1024 } ] } ]
})";

ClusterConfig cluster(const Pki& pki) {
  ClusterConfig c;
  c.enabled = true;
  c.name = "c1";
  c.secret = "s1";
  c.ca = pki.cluster_ca();
  return c;
}

// B's agent and the controllers it may meet, each controller known by an
// address of the agent's --controller list; one that is not `up` answers
// nothing there.
class Terms {
 public:
  Terms()
      : sys(testing_config(cfg, true)),
        sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())),
        registrars(std::make_shared<std::map<std::string, caf::actor>>()),
        asked(std::make_shared<std::vector<std::string>>()) {}

  ~Terms() {
    caf::anon_send(agent, atom::shutdown::value);
    for (auto& [name, c] : controllers) caf::anon_send(c->sup, atom::shutdown::value);
    for (int i = 0; i < 1000 && busy(); ++i) {
      run_all();
      for (auto* s : coordinators()) s->clock().trigger_timeouts();
    }
    registrars->clear();
    agent = nullptr;
    controllers.clear();  // before the agent's system: they held its handle
  }

  void controller(const std::string& name, const char* scenario, std::uint64_t epoch) {
    controllers[name] = std::make_unique<ControllerFixture>(scenario, false, nullptr, cluster(pki), epoch);
  }

  // The controller's registrar answers at its address.
  void up(const std::string& name) {
    (*registrars)[name + ":7411"] = controllers.at(name)->child(ChildKind::registrar, 0);
  }

  void down(const std::string& name) {
    registrars->erase(name + ":7411");
    caf::anon_send(controllers.at(name)->sup, atom::shutdown::value);
    settle();
  }

  void start_agent(const std::vector<std::string>& addresses) {
    AgentConfig ac;
    ac.cluster = "c1";
    ac.secret = "s1";
    ac.host = "B";
    ac.identity = std::make_shared<NodeIdentity>(pki.identity("B"));
    for (const auto& a : addresses) ac.controllers.emplace_back(a, 7411);
    auto sc = platform::parse_scenario(two_hosts, "test scenario");
    BOOST_TEST_REQUIRE(bool(sc));
    ac.scenario = *sc;
    ac.incarnation = 7;
    ac.console = false;
    ac.reach = [registrars = registrars, asked = asked](const std::string& host, std::uint16_t port) {
      std::string at = host + ":" + std::to_string(port);
      asked->push_back(host);
      auto it = registrars->find(at);
      return it == registrars->end() ? caf::actor{} : it->second;
    };
    agent = sys.spawn(memlend::agent, ac);
    settle();
  }

  // Runs every job of every system; an actor's timers stay where they are.
  void settle() { BOOST_TEST_REQUIRE(run_all(), "the actors never settled"); }

  // The agent's time moves to its next timer (a retry, a tick), and
  // everything it sets going runs.
  void step() {
    auto& clock = sched.clock();
    if (clock.schedule().empty()) return;
    auto next = clock.schedule().begin()->first;
    if (next > clock.current_time)
      clock.advance_time(next - clock.current_time);
    else
      clock.trigger_timeout();
    settle();
  }

  // Steps the agent until `done`, within a bound of its own timers.
  bool until(const std::function<bool()>& done) {
    for (int i = 0; i < 200 && !done(); ++i) step();
    return done();
  }

  // What the agent says of itself: joined, the epoch, the leases it lends.
  nlohmann::json status() {
    caf::scoped_actor self{sys};
    self->send(agent, atom::get::value);
    settle();
    std::string out;
    self->receive([&](std::string& s) { out = std::move(s); }, caf::after(std::chrono::seconds(0)) >> [] {});
    BOOST_TEST_REQUIRE(!out.empty());
    return nlohmann::json::parse(out);
  }

  bool joined() { return status()["joined"].get<bool>(); }
  std::set<std::uint64_t> held() { return status()["held"].get<std::set<std::uint64_t>>(); }

  // A command as controller `name`'s node sends it.
  template <class... Ts>
  void command_from(const std::string& name, Ts... xs) {
    caf::scoped_actor self{controllers.at(name)->sys};
    self->send(caf::actor_cast<caf::actor>(agent), xs...);
    settle();
  }

  std::size_t times_asked(const std::string& name) const {
    return static_cast<std::size_t>(std::count(asked->begin(), asked->end(), name));
  }

  Pki pki;
  caf::actor_system_config cfg;
  caf::actor_system sys;  // the agent's
  caf::scheduler::test_coordinator& sched;
  std::shared_ptr<std::map<std::string, caf::actor>> registrars;
  std::shared_ptr<std::vector<std::string>> asked;  // the addresses the agent tried, in turn
  std::map<std::string, std::unique_ptr<ControllerFixture>> controllers;
  agent_actor agent;

 private:
  std::vector<caf::scheduler::test_coordinator*> coordinators() {
    std::vector<caf::scheduler::test_coordinator*> out{&sched};
    for (auto& [name, c] : controllers) out.push_back(&c->sched);
    return out;
  }
  // Actors of one system run on whichever coordinator ran their sender:
  // every coordinator runs until none has work.
  bool run_all() {
    for (int i = 0; i < 1000; ++i) {
      std::size_t ran = 0;
      for (auto* s : coordinators()) ran += s->run();
      if (ran == 0) return true;
    }
    return false;
  }
  bool busy() {
    for (auto* s : coordinators())
      if (s->has_job() || s->has_pending_timeout()) return true;
    return false;
  }
};

// VM2's remote memory as a controller commands it: B lends it lease 7.
RemoteState b_lends_lease_7() {
  LeaseInfo l;
  l.id = 7;
  l.vm = 0;
  l.donor = 1;
  l.recipient = 0;
  l.mib = 1024;
  l.state = LeaseState::active;
  RemoteState r;
  r.vm = 0;
  r.host = 0;
  r.leases = {l};
  return r;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(agent_epoch)

BOOST_AUTO_TEST_CASE(an_agent_refuses_a_controller_below_the_epoch_it_joined_and_tries_the_next) {
  Terms t;
  t.controller("x", two_hosts, 2);
  t.controller("y", b_lends, 1);  // deposed: it still says B lends lease 1
  t.controller("z", two_hosts, 2);
  t.up("x");
  t.up("y");
  t.start_agent({"x", "y", "z"});
  auto s = t.status();
  BOOST_TEST_REQUIRE(s["joined"].get<bool>(), s.dump());
  BOOST_TEST(s["epoch"] == 2);

  // x's process dies; z answers nothing yet. The agent goes round its list
  // and meets y, whose epoch is below the one it joined.
  t.down("x");
  BOOST_TEST_REQUIRE(!t.joined());
  BOOST_TEST_REQUIRE(t.until([&] { return t.times_asked("y") >= 1; }));
  s = t.status();
  BOOST_TEST(!s["joined"].get<bool>(), s.dump());
  BOOST_TEST(s["epoch"] == 2);
  // Nothing rebuilt from y's world: lease 1 is not lent.
  BOOST_TEST(t.held().empty());
  // Nor does y command it.
  t.command_from("y", atom::attach::value, b_lends_lease_7());
  BOOST_TEST(t.held().empty());

  // z, at the same epoch, is joined.
  t.up("z");
  BOOST_TEST_REQUIRE(t.until([&] { return t.joined(); }));
  BOOST_TEST(t.status()["epoch"] == 2);
  BOOST_TEST(t.held().empty());

  // Only z's node commands it now: y's attach and fence change nothing, z's do.
  t.command_from("y", atom::attach::value, b_lends_lease_7());
  BOOST_TEST(t.held().empty());
  t.command_from("z", atom::attach::value, b_lends_lease_7());
  BOOST_TEST((t.held() == std::set<std::uint64_t>{7}));
  t.command_from("y", atom::fence::value, std::vector<std::uint64_t>{});
  BOOST_TEST((t.held() == std::set<std::uint64_t>{7}));
  t.command_from("z", atom::fence::value, std::vector<std::uint64_t>{});
  BOOST_TEST(t.held().empty());

  // Only its own process stops it: neither a deposed controller's node nor
  // the one it joined.
  t.command_from("y", atom::shutdown::value);
  t.command_from("z", atom::shutdown::value);
  BOOST_TEST(t.joined());
}

BOOST_AUTO_TEST_CASE(an_agent_joins_a_controller_at_a_higher_epoch_and_takes_its_world) {
  Terms t;
  t.controller("x", two_hosts, 1);
  t.controller("y", b_lends, 3);
  t.up("x");
  t.up("y");
  t.start_agent({"x", "y"});
  BOOST_TEST_REQUIRE(t.joined());
  BOOST_TEST(t.status()["epoch"] == 1);
  t.down("x");
  BOOST_TEST_REQUIRE(t.until([&] { return t.joined(); }));
  BOOST_TEST(t.status()["epoch"] == 3);
  // Rebuilt from y's world: B lends lease 1.
  BOOST_TEST((t.held() == std::set<std::uint64_t>{1}));
}

BOOST_AUTO_TEST_SUITE_END()
