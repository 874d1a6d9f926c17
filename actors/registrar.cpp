#include "actors/registrar.hpp"

#include "identity/cluster_auth.hpp"
#include "actors/defaults.hpp"
#include "actors/note.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <optional>
#include <set>

namespace memlend {

namespace {

using self_ptr = registrar_actor::stateful_pointer<registrar_state>;

void note(self_ptr self, std::string text, About about = {}) {
  memlend::note(self, self->state.sink, self->state.config.clock, std::move(text), std::move(about));
}

// Takes `nonce` if this registrar handed it out within the last
// join_nonce_ttl and it was not used yet: a join signed over it is fresh.
bool take_nonce(self_ptr self, const std::string& nonce) {
  auto& ns = self->state.nonces;
  auto now = self->clock().now();
  while (!ns.empty() && now - ns.front().second > defaults::join_nonce_ttl) ns.pop_front();
  auto it = std::find_if(ns.begin(), ns.end(), [&](const auto& n) { return same_proof(n.first, nonce); });
  if (nonce.empty() || it == ns.end()) return false;
  ns.erase(it);
  return true;
}

// A join that passed every check, on its way to its host actor.
struct Joining {
  AgentHello hello;
  caf::actor agent;
  std::optional<rdma::Secret> pool_secret;
  caf::typed_response_promise<JoinReply, caf::actor> rp;
};

void not_ready(Joining& j, caf::error& err) {
  JoinReply r;
  r.reason = "the controller is not ready: " + caf::to_string(err);
  j.rp.deliver(std::move(r), caf::actor{});
}

// An agent learns the names of the VMs it is party to (on its host, or
// borrowing through a lease it is party to), none of the others'.
std::vector<Placement> party_placements(std::vector<Placement> all, const std::vector<LeaseInfo>& party,
                                        std::uint32_t h) {
  std::set<std::uint32_t> named;
  for (const auto& l : party) named.insert(l.vm);
  for (auto& p : all)
    if (p.host != h && !named.count(p.vm)) p.name.clear();
  return all;
}

void finish_join(self_ptr self, Joining j, std::uint32_t h) {
  auto fail = [=](caf::error& err) mutable { not_ready(j, err); };
  // The host actor's handle is asked for now: it may have been restarted.
  self->request(self->state.supervisor, defaults::request_timeout, atom::get::value, ChildKind::host,
                std::uint64_t{h})
      .then(
          [=](caf::actor host_handle) mutable {
            self->request(self->state.planner, defaults::request_timeout, atom::join::value)
                .then(
                    [=](std::vector<LeaseInfo>& leases, std::vector<Placement>& placements) mutable {
                      auto& st = self->state;
                      const AgentHello& hello = j.hello;
                      JoinReply r;
                      r.ok = true;
                      r.host = h;
                      r.scenario_t = st.config.clock.now(self->clock());
                      r.speed = st.config.clock.speed;
                      r.sample_period_s = st.config.sample_period_s;
                      r.epoch = st.config.epoch;
                      r.leases = leases_of_host(leases, h);
                      r.placements = party_placements(std::move(placements), r.leases, h);
                      for (const auto& l : r.leases)
                        for (std::uint32_t named : {l.donor, l.recipient})
                          if (named < st.config.host_names.size()) r.host_names[named] = st.config.host_names[named];
                      if (auto plane = st.config.plane) {
                        plane->set_address(hello.host, hello.data_addr);
                        if (j.pool_secret) plane->set_pool_secret(hello.host, *j.pool_secret);
                        add_lease_secrets(r.leases, *plane, st.config.host_names);
                        r.data_bytes_per_mib = plane->options().bytes_per_mib;
                      }
                      auto proxy = caf::actor_cast<host_proxy_actor>(host_handle);
                      self->send(proxy, atom::bind::value, j.agent, hello.incarnation);
                      // The join carries the agent's handle untyped (its wire
                      // type); here, where it arrives, it becomes an agent's.
                      self->send(st.driver, atom::rebind::value, h, caf::actor_cast<agent_actor>(j.agent));
                      note(self, "agent for " + hello.host + " joined (incarnation " +
                                     std::to_string(hello.incarnation) + ", data path " + hello.data_addr + ")",
                           {{}, hello.host});
                      j.rp.deliver(std::move(r), host_handle);
                    },
                    fail);
          },
          fail);
}

// What a host's agent says of it, checked before it counts: a peer may send anything.
std::string check_facts(const HostFacts& f) {
  if (f.memory_mib <= 0 || f.cpu_mhz <= 0) return "it says nothing of its host's memory and CPU";
  if (f.reserved_mib < 0 || f.reserved_mib > f.memory_mib) return "its host's reserve is not within its memory";
  if (f.fabric.size() > 256) return "its fabric's name is longer than 256 bytes";
  return {};
}

}  // namespace

void add_lease_secrets(std::vector<LeaseInfo>& leases, const DataPlane& plane,
                       const std::vector<std::string>& host_names) {
  for (auto& l : leases)
    if (l.data.secret.empty() && l.data.id != 0 && l.donor < host_names.size())
      l.data.secret = plane.lease_secret_hex(host_names[l.donor], l.data.id, l.data.epoch);
}

registrar_actor::behavior_type registrar(registrar_actor::stateful_pointer<registrar_state> self,
                                         RegistrarConfig config, supervisor_actor supervisor,
                                         planner_actor planner, driver_actor driver, sink_actor sink) {
  auto& st = self->state;
  st.config = std::move(config);
  st.supervisor = supervisor;
  st.planner = planner;
  st.driver = driver;
  st.sink = sink;
  return {
      [=](atom::challenge) {
        auto& ns = self->state.nonces;
        if (ns.size() >= defaults::join_nonces_max) ns.pop_front();
        ns.emplace_back(fresh_nonce(), self->clock().now());
        return ns.back().first;
      },
      [=](atom::join, const AgentHello& hello, caf::actor agent) -> caf::result<JoinReply, caf::actor> {
        auto& st = self->state;
        auto refuse = [&](const std::string& why) -> caf::result<JoinReply, caf::actor> {
          note(self, "refused an agent claiming host \"" + hello.host + "\": " + why, {{}, hello.host});
          JoinReply r;
          r.reason = why;
          return {r, caf::actor{}};
        };
        if (hello.cluster != st.config.cluster) return refuse("it belongs to another cluster");
        if (!same_proof(hello.proof, cluster_proof(st.config.secret, hello.cluster, hello.host, hello.incarnation)))
          return refuse("it does not hold the cluster's secret");
        auto it = std::find(st.config.host_names.begin(), st.config.host_names.end(), hello.host);
        bool known = it != st.config.host_names.end();
        if (!known && !st.config.open) return refuse("no such host in this cluster");
        if (st.config.open) {
          if (auto why = check_facts(hello.facts); !why.empty()) return refuse(why);
        }
        // The cluster's secret says only "one of ours": every node holds it.
        // Which host a node is, its certificate says, and the signature says
        // it holds that certificate's key now.
        if (!take_nonce(self, hello.nonce)) return refuse("its join is not signed over a nonce of this controller");
        if (!st.config.ca) return refuse("this controller has no CA to check certificates with");
        std::string statement = join_statement(hello.nonce, hello.cluster, hello.host, hello.incarnation);
        if (auto why = st.config.ca->check(hello.certificate, hello.host, statement, hello.signature); !why.empty())
          return refuse(why);
        // None from an agent without a data path; a malformed one is refused.
        auto pool_secret = secret_of_hex(hello.pool_secret);
        if (!hello.pool_secret.empty() && !pool_secret) return refuse("its pool secret is not 64 hex digits");
        auto rp = self->make_response_promise<JoinReply, caf::actor>();
        Joining j{hello, agent, pool_secret, rp};
        if (!st.config.open) {
          finish_join(self, j, static_cast<std::uint32_t>(it - st.config.host_names.begin()));
          return rp;
        }
        // Admitted only once its certificate says it is this host: an agent
        // cannot make up hosts, nor change another host's facts.
        HostFacts facts = hello.facts;
        facts.name = hello.host;
        self->request(st.supervisor, defaults::request_timeout, atom::admit::value, facts)
            .then(
                [=](std::uint32_t h) mutable {
                  auto& names = self->state.config.host_names;
                  if (h == names.size()) names.push_back(j.hello.host);
                  finish_join(self, j, h);
                },
                [=](caf::error& err) mutable { not_ready(j, err); });
        return rp;
      },
  };
}

}  // namespace memlend
