// A controller without a scenario's hosts: the cluster is who joins. An agent
// whose certificate names a new host is admitted with the facts it brings;
// one whose certificate names another host, or that brings no facts, is not,
// and leaves nothing behind.
#include <boost/test/unit_test.hpp>

#include "fixture.hpp"
#include "tests/support/pki.hpp"

using namespace memlend;
using memlend::test::ControllerFixture;
using memlend::test::Pki;

namespace {

const char* one_host = R"({
  "settings": { "sample_period_s": 7 },
  "hosts": [ { "name": "A", "memory_mib": 16384, "cpu_mhz": 32000 } ],
  "vms": [ { "name": "VM2", "host": "A", "memory_mib": 8192, "cpu_mhz": 1000 } ]
})";

ClusterConfig cluster(const Pki& pki, bool open) {
  ClusterConfig c;
  c.enabled = true;
  c.name = "c1";
  c.secret = "s1";
  c.ca = pki.cluster_ca();
  c.open = open;
  return c;
}

HostFacts facts(std::int64_t mib) {
  HostFacts f;
  f.name = "whatever it says";
  f.memory_mib = mib;
  f.cpu_mhz = 8000;
  return f;
}

// `who`'s certificate and key, joining as `host`.
JoinReply join(ControllerFixture& f, const Pki& pki, const std::string& who, const std::string& host,
               const HostFacts& facts) {
  auto reg = caf::actor_cast<registrar_actor>(f.child(ChildKind::registrar, 0));
  BOOST_TEST_REQUIRE(static_cast<bool>(reg));
  AgentHello h;
  h.cluster = "c1";
  h.host = host;
  h.incarnation = 7;
  h.proof = cluster_proof("s1", "c1", host, 7);
  h.nonce = f.ask<std::string>(reg, atom::challenge::value);
  NodeIdentity id = pki.identity(who);
  h.certificate = id.certificate_pem();
  auto signature = id.sign(join_statement(h.nonce, "c1", host, 7));
  BOOST_TEST_REQUIRE(bool(signature));
  h.signature = *signature;
  h.facts = facts;
  // Stands in for the agent: takes whatever the controller tells it. It takes
  // an argument because CAF 0.17 spawns a function of none through a null
  // pointer to its empty argument tuple, which UBSan rightly reports.
  auto agent = f.sys.spawn(
      [](caf::event_based_actor* self, int) -> caf::behavior {
        self->set_default_handler(caf::drop);
        return {[](atom::shutdown) {}};
      },
      0);
  caf::scoped_actor self{f.sys};
  self->send(reg, atom::join::value, h, agent);
  f.sched.run();
  JoinReply out;
  out.reason = "no answer";
  self->receive([&](JoinReply& r, caf::actor&) { out = std::move(r); },
                caf::after(std::chrono::seconds(0)) >> [] {});
  return out;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(roster_join)

BOOST_AUTO_TEST_CASE(an_agent_for_a_new_host_is_admitted_with_its_facts) {
  Pki pki;
  ControllerFixture f(one_host, false, nullptr, cluster(pki, true));
  JoinReply r = join(f, pki, "B", "B", facts(65536));
  BOOST_TEST_REQUIRE(r.ok, r.reason);
  BOOST_TEST(r.host == 1u);
  // A real node's agent reads no scenario: it learns the cluster's pace here.
  BOOST_TEST(r.sample_period_s == 7);
  auto v = f.view();
  BOOST_TEST_REQUIRE(v.hosts.size() == 2u);
  BOOST_TEST(v.hosts[1].name == "B");  // its certificate's, not what its facts say
  BOOST_TEST(!v.hosts[1].up);          // until its agent reports
  // Its agent reports: the host is up and lends what it said it has.
  auto proxy = caf::actor_cast<host_proxy_actor>(f.child(ChildKind::host, 1));
  platform::HostSample s;
  s.host = 1;
  s.up = true;
  caf::anon_send(proxy, atom::telemetry::value, s, std::vector<platform::VmSample>{});
  f.sched.run();
  v = f.view();
  BOOST_TEST(v.hosts[1].up);
  BOOST_TEST(v.hosts[1].lendable_mib == 65536);
  // The same node again (a restart of its agent, on a bigger host): the same id.
  r = join(f, pki, "node7", "B", facts(131072));
  BOOST_TEST_REQUIRE(r.ok, r.reason);
  BOOST_TEST(r.host == 1u);
  BOOST_TEST(f.view().hosts.size() == 2u);
  BOOST_TEST(f.view().hosts[1].lendable_mib == 131072);
}

BOOST_AUTO_TEST_CASE(an_agent_cannot_make_up_a_host_or_join_without_facts) {
  Pki pki;
  ControllerFixture f(one_host, false, nullptr, cluster(pki, true));
  // evil's certificate is the cluster CA's, but for evil: it cannot be C.
  BOOST_TEST(join(f, pki, "evil", "C", facts(65536)).reason == "its certificate is for evil, not C");
  BOOST_TEST(join(f, pki, "B", "B", facts(0)).reason == "it says nothing of its host's memory and CPU");
  HostFacts odd = facts(1024);
  odd.reserved_mib = 2048;
  BOOST_TEST(join(f, pki, "B", "B", odd).reason == "its host's reserve is not within its memory");
  BOOST_TEST(f.view().hosts.size() == 1u);
  BOOST_TEST(!f.child(ChildKind::host, 1));
}

BOOST_AUTO_TEST_CASE(with_a_scenario_only_its_hosts_join) {
  Pki pki;
  ControllerFixture f(one_host, false, nullptr, cluster(pki, false));
  BOOST_TEST(join(f, pki, "B", "B", facts(65536)).reason == "no such host in this cluster");
  BOOST_TEST(f.view().hosts.size() == 1u);
}

// An agent without a scenario names its VMs as its hypervisor does: the
// first sample naming one admits it on the agent's host, whatever the sample
// claims, and the next ones reach the view.
BOOST_AUTO_TEST_CASE(a_vm_an_agent_names_is_admitted_on_its_host) {
  ClusterConfig c;
  c.enabled = true;
  c.name = "c1";
  ControllerFixture f(one_host, false, nullptr, c);
  auto proxy = caf::actor_cast<host_proxy_actor>(f.child(ChildKind::host, 0));
  platform::HostSample hs;
  hs.up = true;
  platform::VmSample web;
  web.name = "web";
  web.vm = 0;     // means nothing from such an agent: not VM2
  web.host = 7;   // nor does this: the agent speaks for A
  web.demand_mem = 4096;
  web.local_mem = 4096;
  web.demand_cpu = 500;
  web.local_cpu = 500;
  for (int i = 0; i < 2; ++i) {
    caf::anon_send(proxy, atom::telemetry::value, hs, std::vector<platform::VmSample>{web});
    f.sched.run();
  }
  auto v = f.view();
  BOOST_TEST_REQUIRE(v.vms.size() == 2u);
  BOOST_TEST(v.vms[0].demand_mib == 8192);  // VM2 untouched
  BOOST_TEST(v.vms[1].name == "web");
  BOOST_TEST(v.vms[1].host == "A");
  BOOST_TEST(v.vms[1].demand_mib == 4096);
  BOOST_TEST(v.hosts[0].used_mib == 8192 + 4096);
  BOOST_TEST(static_cast<bool>(f.child(ChildKind::vm, 1)));

  // An agent that lists every VM it runs lists web no more, nor VM2: they
  // stopped, and want nothing of A; a VM it lists keeps what it says.
  hs.lists_every_vm = true;
  caf::anon_send(proxy, atom::telemetry::value, hs, std::vector<platform::VmSample>{});
  f.sched.run();
  v = f.view();
  BOOST_TEST(v.vms[0].demand_mib == 0);
  BOOST_TEST(v.vms[1].demand_mib == 0);
  BOOST_TEST(v.hosts[0].used_mib == 0);
  caf::anon_send(proxy, atom::telemetry::value, hs, std::vector<platform::VmSample>{web});
  f.sched.run();
  v = f.view();
  BOOST_TEST(v.vms[0].demand_mib == 0);
  BOOST_TEST(v.vms[1].demand_mib == 4096);
  BOOST_TEST(v.hosts[0].used_mib == 4096);
}

BOOST_AUTO_TEST_SUITE_END()
