#include "actors/agent.hpp"

#include "actors/cluster_auth.hpp"
#include "actors/defaults.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/openssl/manager.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <iostream>

namespace memlend {

namespace {

using self_ptr = agent_actor::stateful_pointer<agent_state>;

// One actor per agent process prints, so plain stdout cannot interleave.
void say(self_ptr self, const std::string& text) {
  if (self->state.config.console)
    std::cout << "memlend agent " << self->state.config.host << ": " << text << std::endl;
}

void retry_later(self_ptr self) {
  auto& st = self->state;
  // 0.5 s, 1 s, 2 s, then every 2 s: quick after a blip, quiet during an outage.
  auto delay = std::chrono::milliseconds(500) * (1 << std::min(st.attempts, 2));
  ++st.attempts;
  self->delayed_send(self, delay, atom::connect::value);
}

// The platform as the controller sees it now: the scenario up to now, the
// VMs that moved and the memory that is lent.
void rebuild(self_ptr self, const JoinReply& r) {
  auto& st = self->state;
  st.platform = platform::make_sim(st.config.scenario);
  st.platform->sample(r.scenario_t);
  for (const auto& p : r.placements) st.platform->migrate(p.vm, p.host);
  // Fencing at the door: a lease it held that the world no longer has as its
  // own was re-homed while it was away, and it must not serve it again.
  std::set<std::uint64_t> mine;
  for (const auto& l : r.leases) {
    st.platform->attach_remote(l.vm, l.donor, l.mib);
    if (l.donor == st.host) mine.insert(l.id);
  }
  for (std::uint64_t id : st.held)
    if (!mine.count(id)) say(self, "drops lease " + std::to_string(id) + ": it was re-homed while this host was away");
  st.held = std::move(mine);
  st.clock.start = self->clock().now();
  st.clock.origin_s = r.scenario_t;
  st.clock.speed = r.speed;
}

void schedule_tick(self_ptr self) {
  auto& st = self->state;
  double t = st.clock.now(self->clock());
  double period = static_cast<double>(st.config.scenario.settings.sample_period_s);
  double next = (std::floor(t / period + 1e-9) + 1) * period;
  self->delayed_send(self, st.clock.after(next - t), atom::tick::value, st.generation);
}

void join(self_ptr self) {
  auto& st = self->state;
  AgentHello hello;
  hello.cluster = st.config.cluster;
  hello.host = st.config.host;
  hello.incarnation = st.config.incarnation;
  hello.proof = cluster_proof(st.config.secret, hello.cluster, hello.host, hello.incarnation);
  hello.data_addr = st.config.data_addr;
  hello.held.assign(st.held.begin(), st.held.end());
  self->request(st.registrar, defaults::request_timeout, atom::join::value, hello, caf::actor_cast<caf::actor>(self))
      .then(
          [=](JoinReply& r, caf::actor home) {
            auto& st = self->state;
            if (!r.ok) {
              say(self, "the controller refused to let it join: " + r.reason);
              self->quit(caf::make_error(caf::sec::runtime_error, "refused: " + r.reason));
              return;
            }
            st.host = r.host;
            rebuild(self, r);
            st.home = caf::actor_cast<host_proxy_actor>(home);
            self->monitor(st.home);
            st.joined = true;
            st.attempts = 0;
            ++st.generation;
            say(self, "joined cluster " + st.config.cluster + " at t=" + std::to_string(static_cast<long>(r.scenario_t)) +
                          "s; " + std::to_string(r.leases.size()) + " leases in the cluster");
            self->send(self, atom::tick::value, st.generation);
          },
          [=](caf::error& err) {
            say(self, "join failed (" + caf::to_string(err) + "); trying again");
            retry_later(self);
          });
}

}  // namespace

agent_actor::behavior_type agent(agent_actor::stateful_pointer<agent_state> self, AgentConfig config) {
  auto& st = self->state;
  st.config = std::move(config);
  auto found = st.config.scenario.find_host(st.config.host);
  st.host = found ? *found : 0;
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    if (dm.source != st.registrar.address() && dm.source != st.home.address()) return;
    if (!st.joined) return;
    st.joined = false;
    ++st.generation;
    say(self, "lost the controller (" + caf::to_string(dm.reason) + "); reconnecting");
    retry_later(self);
  });
  self->send(self, atom::connect::value);
  return {
      [=](atom::connect) {
        auto& st = self->state;
        if (st.joined) return;
        auto mm = self->system().openssl_manager().actor_handle();
        self->request(mm, std::chrono::seconds(10), caf::connect_atom::value, st.config.controller_host,
                      st.config.controller_port)
            .then(
                [=](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
                  if (!ptr) return retry_later(self);
                  self->state.registrar = caf::actor_cast<registrar_actor>(ptr);
                  self->monitor(self->state.registrar);
                  join(self);
                },
                [=](caf::error& err) {
                  if (self->state.attempts == 0)
                    say(self, "cannot reach the controller at " + self->state.config.controller_host + ":" +
                                  std::to_string(self->state.config.controller_port) + " (" + caf::to_string(err) +
                                  "); retrying");
                  retry_later(self);
                });
      },
      [=](atom::tick, std::uint64_t generation) {
        auto& st = self->state;
        if (!st.joined || generation != st.generation) return;
        double t = st.clock.now(self->clock());
        platform::Telemetry tel = st.platform->sample(t + 1e-6);
        std::vector<platform::VmSample> mine;
        for (const auto& v : tel.vms)
          if (v.host == st.host) mine.push_back(v);
        self->send(st.home, atom::telemetry::value, tel.hosts[st.host], mine);
        schedule_tick(self);
      },
      [=](atom::attach, std::uint32_t vm, std::uint32_t donor, std::int64_t mib, std::uint64_t lease) {
        auto& st = self->state;
        if (!st.platform) return;
        st.platform->attach_remote(vm, donor, mib);
        if (donor == st.host) st.held.insert(lease);
      },
      [=](atom::detach, std::uint32_t vm, std::uint32_t donor, std::int64_t mib, std::uint64_t lease) {
        auto& st = self->state;
        if (!st.platform) return;
        st.platform->detach_remote(vm, donor, mib);
        st.held.erase(lease);
      },
      [=](atom::migrate, std::uint32_t vm, std::uint32_t target) {
        if (self->state.platform) self->state.platform->migrate(vm, target);
      },
      [=](atom::fence, const std::vector<std::uint64_t>& keep) {
        auto& st = self->state;
        std::set<std::uint64_t> kept(keep.begin(), keep.end());
        for (auto it = st.held.begin(); it != st.held.end();) {
          if (kept.count(*it)) {
            ++it;
            continue;
          }
          say(self, "drops lease " + std::to_string(*it) + ": it was re-homed while this host was away");
          it = st.held.erase(it);
        }
      },
      [=](atom::get) {
        auto& st = self->state;
        nlohmann::json j{{"host", st.config.host}, {"joined", st.joined}, {"held", st.held}};
        if (st.joined) j["t_s"] = st.clock.now(self->clock());
        return j.dump();
      },
      [=](atom::shutdown) { self->quit(); },
  };
}

}  // namespace memlend
