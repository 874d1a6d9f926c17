#include "actors/agent.hpp"
#include "actors/agent_internal.hpp"

#include "identity/cluster_auth.hpp"
#include "actors/defaults.hpp"
#include "actors/off_thread.hpp"
#include "core/log.hpp"
#include "rdma/net.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/openssl/manager.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <functional>
#include <tuple>

namespace memlend {

namespace agent_detail {

void say(self_ptr self, const std::string& text, log::Fields about) {
  if (!self->state.config.console) return;
  about.host = self->state.config.host;
  log::console("memlend agent " + about.host + ": ", text, about);
}

log::Fields about_vm(const std::string& vm, std::uint64_t lease) {
  log::Fields f;
  f.vm = vm;
  f.lease = lease;
  return f;
}

bool from_controller(self_ptr self) {
  const auto& sender = self->current_sender();
  return self->state.joined && sender && sender->node() == self->state.controller;
}

}  // namespace agent_detail

namespace {

using namespace agent_detail;

// What only this process sends (its own timers, the data path's reports, a
// stop signal): a peer that holds the agent's handle, as every controller it
// has tried does, must not stop it, speed its ticks up or make it report a
// mirror's failure as its own.
bool from_this_process(self_ptr self) {
  const auto& sender = self->current_sender();
  return !sender || sender->node() == self->node();
}

log::Fields about_lease(std::uint64_t lease) {
  log::Fields f;
  f.lease = lease;
  return f;
}

void retry_later(self_ptr self);

// The next address at once while this round has some left (a controller
// that moved is found without waiting), else retry_later.
void try_next(self_ptr self) {
  auto& st = self->state;
  ++st.which;
  if (++st.missed_in_round < st.config.controllers.size()) return self->send(self, atom::connect::value);
  st.missed_in_round = 0;
  retry_later(self);
}

void retry_later(self_ptr self) {
  auto& st = self->state;
  // 0.5 s, 1 s, 2 s, then every 2 s: quick after a blip, quiet during an outage.
  auto delay = std::chrono::milliseconds(500) * (1 << std::min(st.attempts, 2));
  ++st.attempts;
  self->delayed_send(self, delay, atom::connect::value);
}

void revoke(self_ptr self, std::uint64_t lease);
void map_regions(self_ptr self, const RemoteState& r);
void sync_plugs(self_ptr self, const RemoteState& r);

// The controller sends each agent only the leases its host lends or its VMs
// borrow through; anything else is a controller's mistake, and using it would
// touch memory that is not this host's business.
template <class Party>
std::vector<LeaseInfo> own_leases(self_ptr self, const std::vector<LeaseInfo>& leases, Party party) {
  std::vector<LeaseInfo> out;
  for (const auto& l : leases) {
    if (party(l)) {
      out.push_back(l);
      continue;
    }
    say(self, "ignores lease " + std::to_string(l.id) + ": the controller sent it a lease it is not party to",
        about_lease(l.id));
  }
  return out;
}

// After a new controller process took over: the grants the old one made and
// never recorded go back to the pool. Only grants this agent knows no lease
// of: a lease it knew is the fence's business below.
void free_unrecorded_grants(self_ptr self, const JoinReply& r) {
  auto& st = self->state;
  std::vector<std::uint64_t> at_loss = std::move(st.grants_at_loss);
  st.grants_at_loss.clear();
  if (!st.config.plane || at_loss.empty()) return;
  std::set<std::uint64_t> recorded;
  for (const auto& l : r.leases)
    if (l.donor == r.host && l.data.id != 0) recorded.insert(l.data.id);
  for (const auto& [lease, id] : st.pool_id) recorded.insert(id);
  auto plane = st.config.plane;
  std::string host = st.config.host;
  for (std::uint64_t id : unrecorded_grants(at_loss, recorded)) {
    say(self, "frees grant " + std::to_string(id) +
                  " of its pool: the controller that made it stopped before recording it, so no lease has it");
    plane->post([plane, host, id] { plane->revoke(host, id); });
  }
}

// The platform as the controller sees it now: the scenario up to now, the
// VMs that moved and the memory that is lent.
void rebuild(self_ptr self, const JoinReply& r) {
  auto& st = self->state;
  // A real node keeps no copy of the cluster: it knows its own VMs by name
  // and the leases it is party to.
  bool simulated = !st.config.node;
  std::map<std::uint32_t, Placement> where;
  for (const auto& p : r.placements) where[p.vm] = p;
  if (simulated) {
    st.platform = platform::make_sim(st.config.scenario);
    st.platform->sample(r.scenario_t);
    for (const auto& p : r.placements)
      if (p.vm < st.config.scenario.vms.size() && p.host < st.config.scenario.hosts.size() &&
          st.platform->host_of(p.vm) != p.host)
        st.platform->migrate(p.vm, p.host);
  }
  // Fencing at the door: a lease it held that the world no longer has as its
  // own was re-homed while it was away, and it must not serve it again.
  std::set<std::uint64_t> mine;
  st.held_for.clear();
  std::map<std::uint32_t, RemoteState> by_vm;
  auto leases =
      own_leases(self, r.leases, [&](const LeaseInfo& l) { return l.donor == r.host || l.recipient == r.host; });
  for (const auto& l : leases) {
    if (simulated) st.platform->attach_remote(l.vm, l.donor, l.mib);
    by_vm[l.vm].leases.push_back(l);
    if (l.donor == st.host) {
      mine.insert(l.id);
      st.held_for[l.vm].insert(l.id);
      if (l.data.id != 0) st.pool_id[l.id] = l.data.id;
    }
  }
  free_unrecorded_grants(self, r);
  for (std::uint64_t id : st.held)
    if (!mine.count(id)) {
      say(self, "drops lease " + std::to_string(id) + ": it was re-homed while this host was away", about_lease(id));
      revoke(self, id);
    }
  st.held = std::move(mine);
  // Its own VMs' remote memory, mapped again (a restarted agent lost it).
  for (auto& [vm, state] : by_vm) {
    state.vm = vm;
    state.host_names = r.host_names;
    if (simulated) {
      state.host = st.platform->host_of(vm);
    } else if (auto it = where.find(vm); it != where.end()) {
      state.host = it->second.host;
      state.name = it->second.name;
    } else {
      state.host = state.leases.front().recipient;
    }
    if (state.host != st.host) continue;
    map_regions(self, state);
    if (!simulated) sync_plugs(self, state);
  }
  st.clock.start = self->clock().now();
  st.clock.origin_s = r.scenario_t;
  st.clock.speed = r.speed;
  // A real node's agent reads no scenario: it samples at the cluster's pace.
  if (st.config.node && r.sample_period_s > 0) st.config.scenario.settings.sample_period_s = r.sample_period_s;
}

// Fencing's teeth: a lease this host no longer lends is cut from its pool,
// so a stale recipient reads nothing from it.
void revoke(self_ptr self, std::uint64_t lease) {
  auto& st = self->state;
  auto it = st.pool_id.find(lease);
  if (it == st.pool_id.end() || !st.config.plane) return;
  auto plane = st.config.plane;
  std::string host = st.config.host;
  std::uint64_t id = it->second;
  st.pool_id.erase(it);
  plane->post([plane, host, id] { plane->revoke(host, id); });
}

// The recipient's side of the data path for one VM: map its new leases, move
// a failed lease's region onto the lease replacing it, end the others.
void map_regions(self_ptr self, const RemoteState& r) {
  auto& st = self->state;
  auto plane = st.config.plane;
  if (!plane) return;
  std::string vm = !r.name.empty()                          ? r.name
                   : r.vm < st.config.scenario.vms.size() ? st.config.scenario.vms[r.vm].name
                                                           : std::string();
  if (vm.empty()) return;
  // A real node's data plane maps only the VMs whose memory it serves; the
  // platform plugs the others' (sync_plugs).
  if (st.config.node && !st.config.plane_plugs.count(vm)) return;
  bool here = r.host == st.host;
  std::vector<LeaseInfo> leases;
  for (const auto& l : r.leases)
    if (l.data.id != 0) leases.push_back(l);
  bool console = st.config.console;
  std::string me = st.config.host;
  plane->post([plane, vm, here, leases, console, me] {
    auto complain = [&](const std::string& what, std::uint64_t lease) {
      if (!console) return;
      log::Fields f = about_vm(vm, lease);
      f.host = me;
      log::console("memlend agent " + me + ": ", vm + ": " + what, f, log::Level::error);
    };
    std::set<std::uint64_t> keep;
    for (const auto& l : leases) {
      keep.insert(l.id);
      keep.insert(l.replaces);
    }
    for (auto id : plane->regions_of(vm))
      if (!here || !keep.count(id)) plane->detach(vm, id);
    if (!here) return;
    for (const auto& l : leases) {
      if (plane->has_region(vm, l.id)) continue;
      if (l.replaces != 0 && plane->has_region(vm, l.replaces)) {
        plane->fail_over(vm, l.replaces, "lease " + std::to_string(l.replaces) + " was re-homed");
        if (auto s = plane->rehome(vm, l.replaces, l.id, l.data); !s) complain("re-homing: " + s.error().message, l.id);
      } else if (auto s = plane->attach(vm, l.id, l.mib, l.data); !s) {
        complain("mapping lease " + std::to_string(l.id) + ": " + s.error().message, l.id);
      }
    }
  });
}

// Brings one VM of its platform copy to the controller's facts: where it
// runs and what each donor lends it. Absolute, so a repeat changes nothing.
void apply(self_ptr self, const RemoteState& given) {
  auto& st = self->state;
  auto party = [&](const LeaseInfo& l) { return given.host == st.host || l.donor == st.host; };
  RemoteState r{given.vm, given.host, own_leases(self, given.leases, party), given.name, given.host_names};
  if (st.platform) {
    auto& p = *st.platform;
    if (p.host_of(r.vm) != r.host) p.migrate(r.vm, r.host);
    std::map<policy::HostId, std::int64_t> want;
    for (const auto& l : r.leases) want[l.donor] += l.mib;
    std::map<policy::HostId, std::int64_t> have;
    for (const auto& part : p.remote_of(r.vm)) have[part.donor] = part.mib;
    for (const auto& [donor, mib] : have)
      if (want[donor] < mib) p.detach_remote(r.vm, donor, mib - want[donor]);
    for (const auto& [donor, mib] : want)
      if (mib > have[donor]) p.attach_remote(r.vm, donor, mib - have[donor]);
  }
  auto& mine = st.held_for[r.vm];
  for (auto id : mine) st.held.erase(id);
  mine.clear();
  for (const auto& l : r.leases)
    if (l.donor == st.host) {
      bool fresh = !st.held.count(l.id);
      mine.insert(l.id);
      st.held.insert(l.id);
      if (l.data.id != 0) st.pool_id[l.id] = l.data.id;
      if (fresh && st.config.probe && st.config.probe->lending) st.config.probe->lending(l.id, r.vm);
    }
  map_regions(self, r);
  if (st.config.node) {
    if (r.host == st.host) sync_plugs(self, r);
    // Moved away (its memory went with it): nothing is plugged here any more.
    else st.plugged.erase(r.name);
  }
}

std::string host_name(const RemoteState& r, std::uint32_t h) {
  auto it = r.host_names.find(h);
  return it != r.host_names.end() ? it->second : "host " + std::to_string(h);
}

// A real node's VM gets the leases it borrows through plugged by its
// platform, and unplugged when they end. Absolute, so a repeat changes
// nothing; a refusal is said and tried again at the VM's next change.
void sync_plugs(self_ptr self, const RemoteState& r) {
  auto& st = self->state;
  if (r.name.empty() || st.config.plane_plugs.count(r.name)) return;
  auto& node = st.config.node->platform();
  auto& plugged = st.plugged[r.name];
  std::set<std::uint64_t> want;
  for (const auto& l : r.leases) {
    // With a data path the memory is there once the donor granted it.
    if (st.config.plane && l.data.id == 0) continue;
    want.insert(l.id);
    if (plugged.count(l.id)) continue;
    platform::LentMemory m{std::to_string(l.id), host_name(r, l.donor), l.data.addr, l.mib};
    if (auto done = node.attach(r.name, m); !done) {
      say(self, "error: could not plug lease " + m.lease + " (" + std::to_string(l.mib) + " MiB from " + m.donor +
                    ") into VM " + r.name + ": " + done.error().message,
          about_vm(r.name, l.id));
      continue;
    }
    plugged[l.id] = m;
    say(self, "plugged lease " + m.lease + " (" + std::to_string(l.mib) + " MiB from " + m.donor + ") into VM " +
                  r.name,
        about_vm(r.name, l.id));
  }
  for (auto it = plugged.begin(); it != plugged.end();) {
    if (want.count(it->first)) {
      ++it;
      continue;
    }
    if (auto done = node.detach(r.name, it->second); !done) {
      say(self, "error: could not unplug lease " + it->second.lease + " from VM " + r.name + ": " +
                    done.error().message,
          about_vm(r.name, it->first));
      ++it;
      continue;
    }
    say(self, "unplugged lease " + it->second.lease + " from VM " + r.name, about_vm(r.name, it->first));
    it = plugged.erase(it);
  }
}

HostFacts facts_of(const std::string& name, bool data_path, const policy::Host& h) {
  HostFacts f;
  f.name = name;
  f.memory_mib = h.memory_mib;
  f.cpu_mhz = h.cpu_mhz;
  f.reserved_mib = h.reserved_mib;
  f.rdma = false;
  f.data_path = data_path;
  return f;
}

// A real node's reading. It takes as long as its platform lets it (an exec
// hook's timeout, a hypervisor slow to answer), so it runs in an actor on a
// thread of its own, and while it runs the agent tells its host actor at each
// tick that it is alive. A reading that fails sends nothing: the controller's
// silence timer then says the host is down, which is what a host whose
// hypervisor does not answer is.
using Reading = std::tuple<bool, std::string, platform::HostSample, std::vector<platform::VmSample>, HostFacts>;

void read_node(self_ptr self) {
  auto& st = self->state;
  if (st.reading) {
    self->send(st.home, atom::alive::value);
    return;
  }
  if (!st.reader) {
    auto node = st.config.node;
    std::string name = st.config.host;
    bool data_path = st.config.plane != nullptr;
    st.reader = spawn_off_thread(self, std::function<Reading()>([=]() -> Reading {
      auto s = node->sample();
      if (!s) return {false, s.error().message, {}, {}, {}};
      return {true, "", std::move(s->host), std::move(s->vms), facts_of(name, data_path, s->facts)};
    }), false);
  }
  st.reading = true;
  self->request(st.reader, caf::infinite, atom::tick::value)
      .then(
          [=](bool ok, const std::string& error, platform::HostSample& host, std::vector<platform::VmSample>& vms,
              HostFacts& facts) {
            auto& st = self->state;
            st.reading = false;
            if (!ok) {
              if (error != st.unreadable) say(self, "error: cannot read its platform: " + error);
              st.unreadable = error;
              return;
            }
            if (!st.unreadable.empty()) say(self, "reads its platform again");
            st.unreadable.clear();
            st.facts = std::move(facts);
            // Joined since to another controller, its host's id may differ.
            if (!st.joined) return;
            host.host = st.host;
            for (auto& v : vms) v.host = st.host;
            self->send(st.home, atom::telemetry::value, host, vms);
          },
          [=](caf::error& e) {
            self->state.reading = false;
            say(self, "error: its platform's reader failed: " + caf::to_string(e));
          });
}

// Each agent samples at its own phase of the period, fixed by its host's
// name: agents in lockstep would reach the controller as one burst every
// period, and a needy VM's sample would wait behind a thousand others.
double phase(const agent_state& st) {
  double period = static_cast<double>(st.config.scenario.settings.sample_period_s);
  auto h = std::hash<std::string>{}(st.config.host);
  return period * static_cast<double>(h % 1000) / 1000.0;
}

// The guest workload's whole write-then-check rounds, said as they complete
// (at most once per sample): a person, or a test, sees the memory checked
// while the host runs, not only when it stops.
void say_guest_progress(self_ptr self) {
  auto& st = self->state;
  if (!st.config.guest || !st.platform) return;
  for (std::uint32_t v = 0; v < st.config.scenario.vms.size(); ++v) {
    if (st.platform->host_of(v) != st.host) continue;
    const std::string& name = st.config.scenario.vms[v].name;
    demo::GuestStats g = st.config.guest->stats(name);
    auto& said = st.guest_passes[v];
    if (g.passes <= said) continue;
    said = g.passes;
    say(self, "the guest workload of " + name + " has checked its remote memory " + std::to_string(g.passes) +
                  (g.passes == 1 ? " time: " : " times: ") + std::to_string(g.mismatches) +
                  (g.mismatches == 1 ? " word" : " words") + " wrong so far",
        about_vm(name));
  }
}

void schedule_tick(self_ptr self) {
  auto& st = self->state;
  double t = st.clock.now(self->clock());
  double period = static_cast<double>(st.config.scenario.settings.sample_period_s);
  double offset = phase(st);
  double next = (std::floor((t - offset) / period + 1e-9) + 1) * period + offset;
  self->delayed_send(self, st.clock.after(next - t), atom::tick::value, st.generation);
}

void join_failed(self_ptr self, const caf::error& err) {
  say(self, "join failed (" + caf::to_string(err) + "); trying again");
  retry_later(self);
}

void join(self_ptr self, const std::string& nonce) {
  auto& st = self->state;
  AgentHello hello;
  hello.cluster = st.config.cluster;
  hello.host = st.config.host;
  hello.incarnation = st.config.incarnation;
  hello.proof = cluster_proof(st.config.secret, hello.cluster, hello.host, hello.incarnation);
  hello.data_addr = st.config.data_addr;
  hello.held.assign(st.held.begin(), st.held.end());
  hello.nonce = nonce;
  if (const auto& id = st.config.identity) {
    hello.certificate = id->certificate_pem();
    auto signature = id->sign(join_statement(nonce, hello.cluster, hello.host, hello.incarnation));
    if (signature) hello.signature = *signature;
    if (st.config.plane) hello.pool_secret = hex_of_secret(id->pool_secret());
  }
  if (st.config.node) {
    if (!st.facts) {
      auto s = st.config.node->sample();
      if (!s) {
        say(self, "cannot read its platform to join (" + s.error().message + "); trying again");
        return retry_later(self);
      }
      st.facts = facts_of(st.config.host, st.config.plane != nullptr, s->facts);
    }
    hello.facts = *st.facts;
  }
  self->request(st.registrar, defaults::request_timeout, atom::join::value, hello, caf::actor_cast<caf::actor>(self))
      .then(
          [=](JoinReply& r, caf::actor home) {
            auto& st = self->state;
            if (!r.ok) {
              say(self, "the controller refused to let it join: " + r.reason);
              self->quit(caf::make_error(caf::sec::runtime_error, "refused: " + r.reason));
              return;
            }
            if (r.epoch < st.epoch) {
              std::string where = "its controller";
              if (!st.config.controllers.empty()) {
                const auto& [host, port] = st.config.controllers[st.which % st.config.controllers.size()];
                where = "the controller at " + host + ":" + std::to_string(port);
              }
              say(self, "refused " + where + ": its leadership epoch " +
                            std::to_string(r.epoch) + " is below " + std::to_string(st.epoch) +
                            ", that of a controller it joined before; trying the next");
              return try_next(self);
            }
            if (st.config.plane && r.data_bytes_per_mib != 0 &&
                r.data_bytes_per_mib != st.config.plane->options().bytes_per_mib) {
              say(self, "its --data-kib-per-gib is " + std::to_string(st.config.plane->options().bytes_per_mib) +
                            " and the controller's is " + std::to_string(r.data_bytes_per_mib) + "; they must agree");
              self->quit(caf::make_error(caf::sec::runtime_error, "data path scale differs"));
              return;
            }
            st.host = r.host;
            st.epoch = r.epoch;
            // The same controller (its host actor restarted, or a partition
            // healed) still knows every grant it made, recorded or in flight.
            caf::node_id now = st.registrar.node();
            if (now == st.controller) st.grants_at_loss.clear();
            st.controller = now;
            rebuild(self, r);
            st.home = caf::actor_cast<host_proxy_actor>(home);
            self->monitor(st.home);
            st.joined = true;
            st.attempts = 0;
            st.missed_in_round = 0;
            st.said_missing.clear();
            ++st.generation;
            say(self, "joined cluster " + st.config.cluster + " at t=" + std::to_string(static_cast<long>(r.scenario_t)) +
                          "s" + (r.epoch ? " (leadership epoch " + std::to_string(r.epoch) + ")" : std::string()) +
                          "; it lends or borrows through " + std::to_string(r.leases.size()) +
                          (r.leases.size() == 1 ? " lease" : " leases"));
            self->send(self, atom::tick::value, st.generation);
            if (st.config.probe && st.config.probe->joined) st.config.probe->joined(st.config.host);
          },
          [=](caf::error& err) { join_failed(self, err); });
}

// The controller at the address tried answered with its registrar (none:
// nobody published one there): asks it to let this agent join.
void reached(self_ptr self, const caf::actor& registrar) {
  auto& st = self->state;
  if (!registrar) return try_next(self);
  st.registrar = caf::actor_cast<registrar_actor>(registrar);
  self->monitor(st.registrar);
  self->request(st.registrar, defaults::request_timeout, atom::challenge::value)
      .then([=](const std::string& nonce) { join(self, nonce); }, [=](caf::error& err) { join_failed(self, err); });
}

}  // namespace

std::vector<std::uint64_t> unrecorded_grants(const std::vector<std::uint64_t>& grants_at_loss,
                                             const std::set<std::uint64_t>& recorded) {
  std::vector<std::uint64_t> out;
  for (std::uint64_t id : grants_at_loss)
    if (!recorded.count(id)) out.push_back(id);
  return out;
}

// A connect probe's outcome: something listens, or why not.
using Outcome = std::tuple<bool, std::string>;

// The controller's registrar through CAF's network layer, once something
// listens at host:port; `unreachable(why)` when it cannot be had.
template <class Unreachable>
void connect_to(self_ptr self, const std::string& host, std::uint16_t port, Unreachable unreachable) {
  auto mm = self->system().openssl_manager().actor_handle();
  self->request(mm, std::chrono::seconds(10), caf::connect_atom::value, host, port)
      .then(
          [=](const caf::node_id&, caf::strong_actor_ptr& ptr, const std::set<std::string>&) {
            reached(self, caf::actor_cast<caf::actor>(ptr));
          },
          [=](caf::error& err) { unreachable(caf::to_string(err)); });
}

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
    if (st.config.plane) st.grants_at_loss = st.config.plane->pool_leases(st.config.host);
    say(self, "lost the controller (" + caf::to_string(dm.reason) + "); reconnecting");
    // The others first: the one just lost is the least likely to answer.
    if (st.config.controllers.size() > 1) ++st.which;
    retry_later(self);
  });
  self->send(self, atom::connect::value);
  return {
      [=](atom::connect) {
        auto& st = self->state;
        if (st.joined || !from_this_process(self)) return;
        if (st.config.controllers.empty()) return;
        const auto& [host, port] = st.config.controllers[st.which % st.config.controllers.size()];
        if (st.config.reach) return reached(self, st.config.reach(host, port));
        std::string where = host + ":" + std::to_string(port);
        auto unreachable = [=](const std::string& why) {
          auto& st = self->state;
          // Each address is said once per outage.
          if (st.said_missing.insert(st.which % st.config.controllers.size()).second)
            say(self, "cannot reach a controller at " + where + " (" + why + "); " +
                          (st.config.controllers.size() > 1 ? "trying the next" : "retrying"));
          try_next(self);
        };
        // CAF 0.17's middleman connects blocking, one connect at a time: a
        // connect to a dead host (whose SYNs nobody answers) holds every
        // later connect, to any controller, for the kernel's minutes of SYN
        // retries. So a plain TCP connect, bounded and off the actor's
        // thread, says first whether anything listens there.
        auto probe = spawn_off_thread(self, std::function<Outcome()>([where]() -> Outcome {
          auto fd = rdma::net::connect_tcp(where, defaults::controller_probe_timeout);
          if (!fd) return {false, fd.error().message};
          return {true, ""};
        }), true);
        self->request(probe, caf::infinite, atom::tick::value)
            .then(
                [=](bool listens, const std::string& why) {
                  if (!listens) return unreachable(why);
                  connect_to(self, host, port, unreachable);
                },
                [=](caf::error& err) { unreachable(caf::to_string(err)); });
      },
      [=](atom::tick, std::uint64_t generation) {
        auto& st = self->state;
        if (!st.joined || generation != st.generation || !from_this_process(self)) return;
        if (st.config.node) {
          read_node(self);
          return schedule_tick(self);
        }
        double t = st.clock.now(self->clock());
        platform::Telemetry tel = st.platform->sample_host(t + 1e-6, st.host);
        const auto& mine = tel.vms;
        self->send(st.home, atom::telemetry::value, tel.hosts.at(0), mine);
        if (st.config.probe && st.config.probe->sampled)
          for (const auto& v : mine)
            st.config.probe->sampled(v.vm, std::max<std::int64_t>(0, v.demand_mem - v.local_mem - v.remote_mem));
        say_guest_progress(self);
        schedule_tick(self);
      },
      [=](atom::attach, const RemoteState& r) {
        auto& st = self->state;
        if (!st.platform && !st.config.node) return;
        if (!from_controller(self)) return;
        apply(self, r);
      },
      [=](atom::mirrorfail, const std::string& vm, const std::string& why) {
        auto& st = self->state;
        if (!from_this_process(self)) return;
        say(self, "error: the mirror of " + vm + " cannot be written (" + why + ")", about_vm(vm));
        // Not joined: the controller hears of it when the region fails
        // again; the log line above is the record meanwhile.
        if (st.joined) self->send(st.home, atom::mirrorfail::value, vm, why);
      },
      [=](atom::reserve, atom::migrate, const std::string& vm) { return receive_vm(self, vm); },
      [=](atom::migrate, const std::string& vm, const std::string& host, const std::string& address) {
        return migrate_vm(self, vm, host, address);
      },
      [=](atom::cancel, atom::migrate, const std::string& vm) {
        auto& st = self->state;
        if (!from_controller(self) || !st.config.node) return;
        say(self, "VM " + vm + " did not migrate here: its incoming side is undone", about_vm(vm));
        st.config.node->platform().cancel_receive(vm);
      },
      [=](atom::fence, const std::vector<std::uint64_t>& keep) {
        auto& st = self->state;
        if (!from_controller(self)) return;
        std::set<std::uint64_t> kept(keep.begin(), keep.end());
        for (auto it = st.held.begin(); it != st.held.end();) {
          if (kept.count(*it)) {
            ++it;
            continue;
          }
          say(self, "drops lease " + std::to_string(*it) + ": it was re-homed while this host was away",
              about_lease(*it));
          revoke(self, *it);
          for (auto& [vm, ids] : st.held_for) ids.erase(*it);
          it = st.held.erase(it);
        }
      },
      [=](atom::get) {
        auto& st = self->state;
        nlohmann::json j{{"host", st.config.host}, {"joined", st.joined}, {"held", st.held}, {"epoch", st.epoch}};
        if (st.joined) j["t_s"] = st.clock.now(self->clock());
        return j.dump();
      },
      [=](atom::shutdown) {
        if (from_this_process(self)) self->quit();
      },
  };
}

}  // namespace memlend
