#include "actors/supervisor.hpp"

#include "actors/defaults.hpp"
#include "actors/host.hpp"
#include "actors/lease.hpp"
#include "actors/mirror_writer.hpp"
#include "actors/note.hpp"
#include "actors/planner.hpp"
#include "actors/platform_driver.hpp"
#include "actors/registrar.hpp"
#include "actors/vm.hpp"
#include "policy/cluster.hpp"
#include "rdma/mirror.hpp"

#include <caf/all.hpp>

#include <algorithm>

namespace memlend {

namespace {

using self_ptr = supervisor_actor::stateful_pointer<supervisor_state>;

void note(self_ptr self, std::string text, About about = {}) {
  memlend::note(self, self->state.config.sink, self->state.clock, std::move(text), std::move(about));
}

supervisor_actor handle_of(self_ptr self) { return caf::actor_cast<supervisor_actor>(self); }

template <class T>
T state_or(const caf::message& m, T fallback) {
  if (m.match_elements<T>()) return m.get_as<T>(0);
  return fallback;
}

// Those who hold a child's handle get the new one, typed, after a restart.
void rebind(self_ptr self, std::uint32_t h, const host_proxy_actor& child) {
  auto& st = self->state;
  if (st.planner) self->send(st.planner, atom::rebind::value, h, child);
  if (st.driver) self->send(st.driver, atom::rebind::value, h, host_actor{child});
}

void rebind(self_ptr self, std::uint32_t v, const vm_actor& child) {
  auto& st = self->state;
  if (st.planner) self->send(st.planner, atom::rebind::value, v, child);
  if (st.driver) self->send(st.driver, atom::rebind::value, v, child);
}

void rebind(self_ptr self, std::uint64_t id, const lease_actor& child) {
  if (self->state.planner) self->send(self->state.planner, atom::rebind::value, id, child);
}

void rebind(self_ptr self, std::uint32_t v, const mirror_actor& child) {
  if (self->state.planner) self->send(self->state.planner, atom::rebind::value, v, child);
}

// Spawns one restartable child from its last state; `tell`: and rebinds it.
caf::actor spawn_child(self_ptr self, ChildKind kind, std::uint64_t key, const caf::message& last,
                       bool tell) {
  auto& st = self->state;
  auto& sc = st.config.scenario;
  auto sup = handle_of(self);
  auto started = [&](auto id, auto child) {
    if (tell) rebind(self, id, child);
    return caf::actor_cast<caf::actor>(child);
  };
  if (kind == ChildKind::host) {
    HostCheckpoint cp = state_or(last, HostCheckpoint{});
    HostOptions opts{st.config.cluster.enabled, st.clock, static_cast<double>(sc.settings.sample_period_s),
                     st.config.cluster.heartbeat_misses};
    return started(static_cast<std::uint32_t>(key), self->spawn(host, sc.hosts[key], cp, opts, st.planner, sup, st.driver));
  }
  if (kind == ChildKind::vm) {
    VmConfig cfg;
    cfg.name = sc.vms[key].name;
    for (const auto& h : sc.hosts) cfg.host_names.push_back(h.name);
    cfg.settings = sc.settings;
    cfg.clock = st.clock;
    VmCheckpoint cp = state_or(last, VmCheckpoint{});
    return started(static_cast<std::uint32_t>(key), self->spawn(vm, cfg, cp, st.planner, st.config.sink, sup));
  }
  if (kind == ChildKind::lease) {
    LeaseConfig lc;
    lc.plane = st.config.plane;
    lc.local_recipient = !st.config.cluster.enabled;
    for (const auto& h : sc.hosts) lc.host_names.push_back(h.name);
    for (const auto& v : sc.vms) lc.vm_names.push_back(v.name);
    lc.clock = st.clock;
    lc.metrics = st.config.metrics;
    return started(key, self->spawn(lease, state_or(last, LeaseInfo{}), lc, sup, st.config.sink, st.driver, st.planner));
  }
  if (kind == ChildKind::mirror)
    return started(static_cast<std::uint32_t>(key),
                   self->spawn(mirror_writer, state_or(last, MirrorInfo{}), st.config.plane, sup, st.config.sink));
  return {};
}

void adopt(self_ptr self, ChildKind kind, std::uint64_t key, caf::actor child, caf::message last) {
  auto& st = self->state;
  self->monitor(child);
  st.by_addr[child.address()] = {kind, key};
  auto& c = st.children[{kind, key}];
  c.handle = child;
  c.last = std::move(last);
}

void stop_all(self_ptr self, caf::error reason) {
  auto& st = self->state;
  if (st.stopping) return;
  st.stopping = true;
  // The driver first, so no new telemetry starts work; then the rest.
  for (ChildKind kind : child_kinds)
    for (auto& [k, c] : st.children)
      if (k.first == kind) self->send_exit(c.handle, caf::exit_reason::user_shutdown);
  // Twice: events the store made durable during the first flush reach the
  // sink's mailbox before the second request, and are written out first.
  self->request(st.config.sink, defaults::shutdown_grace, atom::flush::value)
      .then(
          [=](bool) {
            self->request(self->state.config.sink, defaults::shutdown_grace, atom::flush::value)
                .then(
                    [=](bool) {
                      self->send_exit(self->state.config.sink, caf::exit_reason::user_shutdown);
                      self->quit(reason);
                    },
                    [=](caf::error&) {
                      self->send_exit(self->state.config.sink, caf::exit_reason::user_shutdown);
                      self->quit(reason);
                    });
          },
          [=](caf::error&) {
            self->send_exit(self->state.config.sink, caf::exit_reason::user_shutdown);
            self->quit(reason);
          });
}

void on_down(self_ptr self, const caf::down_msg& dm) {
  auto& st = self->state;
  auto who = st.by_addr.find(dm.source);
  if (who == st.by_addr.end()) return;
  auto key = who->second;
  st.by_addr.erase(who);
  auto it = st.children.find(key);
  if (it == st.children.end()) return;
  if (st.stopping || !dm.reason || dm.reason == caf::exit_reason::normal) {
    st.children.erase(it);
    return;
  }
  const auto& [kind, id] = key;
  std::string who_text = std::string(to_string(kind)) + " actor " + std::to_string(id);
  if (kind == ChildKind::planner || kind == ChildKind::driver || kind == ChildKind::registrar) {
    note(self, "error: the " + std::string(to_string(kind)) + " crashed (" + caf::to_string(dm.reason) +
                   "); stopping so the controller restarts whole and recovers from its store");
    return stop_all(self, caf::make_error(caf::sec::runtime_error, "the " + std::string(to_string(kind)) + " crashed"));
  }
  auto& c = it->second;
  auto now = self->clock().now();
  c.restarts.push_back(now);
  while (!c.restarts.empty() && now - c.restarts.front() > defaults::restart_window) c.restarts.pop_front();
  if (static_cast<int>(c.restarts.size()) > defaults::restart_limit) {
    note(self, "error: the " + who_text + " crashed " + std::to_string(c.restarts.size()) +
                   " times in a minute; giving up");
    return stop_all(self, caf::make_error(caf::sec::runtime_error, who_text + " keeps crashing"));
  }
  auto backoff = defaults::restart_backoff * (1 << (c.restarts.size() - 1));
  auto delay = std::min<caf::timespan>(backoff, defaults::restart_backoff_max);
  note(self, "the " + who_text + " crashed (" + caf::to_string(dm.reason) + "); restarting it from its last state");
  self->delayed_send(self, delay, atom::restart::value, kind, id);
}

// A host by name: known ones keep their id (their facts may have changed),
// new ones are appended, so ids are never reused and the store's rows by id
// stay true. Everyone holding a per-host list learns the new entry before the
// new actor's handle, since messages between two actors keep their order.
std::uint32_t admit_host(self_ptr self, const HostFacts& facts) {
  auto& st = self->state;
  auto& hosts = st.config.scenario.hosts;
  auto known = st.config.scenario.find_host(facts.name);
  if (known) {
    hosts[*known] = host_of(facts, hosts[*known].up);
    self->send(st.planner, atom::admit::value, *known, facts, hosts[*known].up);
    // Its actor's spec is rebuilt from hosts[] on a restart; until then it is told.
    if (auto it = st.children.find({ChildKind::host, *known}); it != st.children.end())
      self->send(caf::actor_cast<host_actor>(it->second.handle), atom::admit::value, facts);
    return *known;
  }
  auto id = static_cast<std::uint32_t>(hosts.size());
  // In cluster mode a host is up once its agent has reported, as at the start.
  hosts.push_back(host_of(facts, !st.config.cluster.enabled));
  self->send(st.planner, atom::admit::value, id, facts, hosts.back().up);
  self->send(st.driver, atom::admit::value, id, facts.name);
  for (auto& [key, c] : st.children)
    if (key.first == ChildKind::vm) self->send(caf::actor_cast<vm_actor>(c.handle), atom::admit::value, id, facts.name);
  HostCheckpoint cp;
  cp.host = id;
  cp.up = hosts[id].up;
  auto msg = caf::make_message(cp);
  adopt(self, ChildKind::host, id, spawn_child(self, ChildKind::host, id, msg, true), msg);
  note(self, "host " + facts.name + " joined with " + policy::fmt_mib(facts.memory_mib) + " and " +
                 policy::fmt_mhz(facts.cpu_mhz),
       {{}, facts.name});
  return id;
}

// A VM by name, first seen on `host`: appended with no demand until its
// telemetry says otherwise. A VM is known by its name across hosts (a
// migration by others moves it, it does not make a new one).
caf::result<std::uint32_t> admit_vm(self_ptr self, const std::string& name, std::uint32_t host) {
  auto& st = self->state;
  auto& sc = st.config.scenario;
  if (auto known = sc.find_vm(name)) return *known;
  if (host >= sc.hosts.size() || name.empty())
    return caf::make_error(caf::sec::invalid_argument, "no such host for VM \"" + name + "\"");
  auto id = static_cast<std::uint32_t>(sc.vms.size());
  policy::Vm v;
  v.name = name;
  v.host = host;
  sc.vms.push_back(v);
  self->send(st.planner, atom::admit::value, id, name, host);
  self->send(st.driver, atom::admit::value, id, name, host);
  VmCheckpoint cp;
  cp.vm = id;
  cp.host = host;
  auto msg = caf::make_message(cp);
  adopt(self, ChildKind::vm, id, spawn_child(self, ChildKind::vm, id, msg, true), msg);
  note(self, "VM " + name + " appeared on " + sc.hosts[host].name, {name, sc.hosts[host].name});
  return id;
}

}  // namespace

supervisor_actor::behavior_type supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
                                           SupervisorConfig config) {
  auto& st = self->state;
  st.config = std::move(config);
  st.clock.start = self->clock().now();
  st.clock.speed = st.config.speed;
  st.clock.origin_s = st.config.origin_s;
  self->set_down_handler([=](caf::down_msg& dm) { on_down(self, dm); });
  self->set_error_handler([=](caf::error& err) { note(self, "error: " + caf::to_string(err)); });
  // In cluster mode a host is up once its agent has joined and reported.
  if (st.config.cluster.enabled)
    for (auto& h : st.config.scenario.hosts) h.up = false;
  const auto& sc = st.config.scenario;
  auto sup = handle_of(self);

  PlannerConfig pc{sc, st.clock, st.config.dry_run, st.config.datastore};
  pc.start = st.config.start;
  pc.store = st.config.store;
  pc.fingerprint = st.config.fingerprint;
  // Simulated hosts' memory is served by this process: it dies and comes back with them.
  if (!st.config.cluster.enabled) pc.plane = st.config.plane;
  pc.metrics = st.config.metrics;
  st.planner = self->spawn(planner, pc, sup, st.config.sink);
  adopt(self, ChildKind::planner, 0, caf::actor_cast<caf::actor>(st.planner), {});
  DriverConfig dc{st.config.cluster.enabled, st.clock, static_cast<double>(sc.settings.sample_period_s),
                  st.config.until_s};
  if (st.config.cluster.enabled) {
    dc.plane = st.config.plane;
    for (const auto& h : sc.hosts) dc.host_names.push_back(h.name);
  }
  std::vector<RemoteState> start(sc.vms.size());
  for (policy::VmId v = 0; v < sc.vms.size(); ++v) start[v] = {v, sc.vms[v].host, {}, sc.vms[v].name, {}};
  for (const auto& l : st.config.start.leases)
    if (l.state == LeaseState::active) start[l.vm].leases.push_back(l);
  st.driver = self->spawn(platform_driver, dc, st.config.platform, sc.hosts.size(), start, sup, st.config.sink,
                          st.planner);
  adopt(self, ChildKind::driver, 0, caf::actor_cast<caf::actor>(st.driver), {});
  self->send(st.planner, atom::rebind::value, st.driver);

  const std::vector<LeaseInfo>& leases = st.config.start.leases;
  for (policy::HostId h = 0; h < sc.hosts.size(); ++h) {
    HostCheckpoint cp;
    cp.host = h;
    cp.up = sc.hosts[h].up;
    for (const auto& l : leases)
      if (l.donor == h && l.state == LeaseState::active) {
        cp.lease_ids.push_back(l.id);
        cp.lease_mib.push_back(l.mib);
      }
    auto msg = caf::make_message(cp);
    auto child = spawn_child(self, ChildKind::host, h, msg, true);
    adopt(self, ChildKind::host, h, child, msg);
  }
  for (policy::VmId v = 0; v < sc.vms.size(); ++v) {
    VmCheckpoint cp;
    cp.vm = v;
    cp.host = sc.vms[v].host;
    if (auto since = st.config.start.remote_since.find(v); since != st.config.start.remote_since.end()) {
      cp.has_remote = true;
      cp.remote_since = since->second;
      cp.generation = 1;
      cp.recommended = st.config.start.recommended.count(v) > 0;
    }
    auto msg = caf::make_message(cp);
    auto child = spawn_child(self, ChildKind::vm, v, msg, true);
    adopt(self, ChildKind::vm, v, child, msg);
  }
  for (const auto& l : leases) {
    auto msg = caf::make_message(l);
    auto child = spawn_child(self, ChildKind::lease, l.id, msg, true);
    adopt(self, ChildKind::lease, l.id, child, msg);
  }
  for (policy::VmId v = 0; v < sc.vms.size(); ++v) {
    std::int64_t mib = 0;
    for (const auto& l : leases)
      if (l.vm == v) mib += l.mib;
    if (mib == 0) continue;
    auto msg = caf::make_message(MirrorInfo{v, mib, rdma::mirror_path(st.config.datastore, sc.vms[v].name), MirrorState::writing});
    auto child = spawn_child(self, ChildKind::mirror, v, msg, true);
    adopt(self, ChildKind::mirror, v, child, msg);
  }
  if (st.config.cluster.enabled) {
    std::vector<std::string> names;
    for (const auto& h : sc.hosts) names.push_back(h.name);
    RegistrarConfig rc{st.config.cluster.name, st.config.cluster.secret, names, st.clock, st.config.plane,
                       st.config.cluster.ca};
    rc.open = st.config.cluster.open;
    rc.sample_period_s = sc.settings.sample_period_s;
    rc.epoch = st.config.start.epoch;
    st.registrar = self->spawn(registrar, rc, sup, st.planner, st.driver, st.config.sink);
    adopt(self, ChildKind::registrar, 0, caf::actor_cast<caf::actor>(st.registrar), {});
  }
  self->send(st.driver, atom::tick::value);

  return {
      [=](atom::spawn, const LeaseInfo& info) {
        auto msg = caf::make_message(info);
        auto child = spawn_child(self, ChildKind::lease, info.id, msg, false);
        adopt(self, ChildKind::lease, info.id, child, msg);
        return caf::actor_cast<lease_actor>(child);
      },
      [=](atom::spawn, const MirrorInfo& info) {
        auto msg = caf::make_message(info);
        auto child = spawn_child(self, ChildKind::mirror, info.vm, msg, false);
        adopt(self, ChildKind::mirror, info.vm, child, msg);
        return caf::actor_cast<mirror_actor>(child);
      },
      [=](atom::checkpoint, ChildKind kind, std::uint64_t key, caf::message& state) {
        auto it = self->state.children.find({kind, key});
        if (it != self->state.children.end()) it->second.last = std::move(state);
      },
      [=](atom::restart, ChildKind kind, std::uint64_t key) {
        auto& st = self->state;
        auto it = st.children.find({kind, key});
        if (st.stopping || it == st.children.end()) return;
        caf::message last = it->second.last;
        auto child = spawn_child(self, kind, key, last, true);
        self->monitor(child);
        st.by_addr[child.address()] = {kind, key};
        it->second.handle = child;
        ++st.restarts_total;
        if (st.config.metrics) st.config.metrics->actor_restarts(to_string(kind)).inc();
      },
      [=](atom::get, ChildKind kind, std::uint64_t key) {
        // The registrar is asked for by name too, so the controller can publish it.
        auto it = self->state.children.find({kind, key});
        return it == self->state.children.end() ? caf::actor{} : it->second.handle;
      },
      [=](atom::admit, const HostFacts& facts) { return admit_host(self, facts); },
      [=](atom::admit, const std::string& name, std::uint32_t host) { return admit_vm(self, name, host); },
      [=](atom::shutdown) { stop_all(self, caf::exit_reason::user_shutdown); },
  };
}

}  // namespace memlend
