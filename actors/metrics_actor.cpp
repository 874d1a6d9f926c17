#include "actors/metrics_actor.hpp"

#include "actors/defaults.hpp"
#include "core/stop_signals.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <cmath>

namespace memlend {

namespace {

using self_ptr = metrics_actor::stateful_pointer<metrics_state>;
using metrics::LeaseRelease;

// Even at --speed 1000000 a sample a tenth of a second apart is plenty: a
// scrape every few seconds is as fresh as Prometheus gets.
constexpr auto min_period = std::chrono::milliseconds(100);

// What a lease between these two hosts runs over, as the planner decides it.
policy::Transport transport_between(const policy::Scenario& s, const std::string& a, const std::string& b) {
  auto x = s.find_host(a), y = s.find_host(b);
  if (!x || !y) return policy::Transport::tcp;
  return s.hosts[*x].rdma && s.hosts[*y].rdma ? policy::Transport::rdma : policy::Transport::tcp;
}

// The transport the plane's regions use: in `run` TCP on loopback, whatever
// the scenario says of the hosts' NICs.
policy::Transport plane_transport(const DataPlane& plane) {
  return plane.options().transport == rdma::TransportKind::verbs ? policy::Transport::rdma : policy::Transport::tcp;
}

// Counters only grow: a total that dips (a region between ending and being
// added to the ended ones) is taken up again only past its highest value.
void grow(const metrics::Counter& c, std::uint64_t now, std::uint64_t& last) {
  if (now > last) {
    c.inc(static_cast<double>(now - last));
    last = now;
  }
}

void sample_data_path(self_ptr self) {
  auto& st = self->state;
  if (!st.config.plane) return;
  DataPathTotals now = st.config.plane->totals();
  auto m = st.config.registry->data_path(plane_transport(*st.config.plane));
  grow(m.page_faults, now.faults, st.last.faults);
  grow(m.read_bytes, now.bytes_read, st.last.bytes_read);
  grow(m.written_bytes, now.bytes_written, st.last.bytes_written);
  grow(st.config.registry->mirror_written_bytes(), now.mirror_bytes_written, st.last.mirror_bytes_written);
  auto& was = st.last.fault_latency;
  const auto& is = now.fault_latency;
  was.counts.resize(std::max(was.counts.size(), is.counts.size()));
  std::vector<std::pair<double, std::uint64_t>> added;
  for (std::size_t i = 0; i < is.counts.size(); ++i)
    if (is.counts[i] > was.counts[i]) {
      double upper_s = rdma::LatencyHistogram::Snapshot::upper_bound_ns(static_cast<int>(i)) / 1e9;
      added.emplace_back(upper_s, is.counts[i] - was.counts[i]);
      was.counts[i] = is.counts[i];
    }
  double sum_s = 0;
  if (is.sum_ns > was.sum_ns) {
    sum_s = static_cast<double>(is.sum_ns - was.sum_ns) / 1e9;
    was.sum_ns = is.sum_ns;
  }
  m.fault_duration.observe_counts(added, sum_s);
  std::uint64_t lag = 0;
  for (const auto& [vm, bytes] : now.mirror_lag) lag += bytes;
  st.config.registry->mirror_lag_bytes().set(static_cast<double>(lag));
  st.mirror_lag = std::move(now.mirror_lag);
}

// A release still unexplained after a whole sample period was no move.
void settle_releases(self_ptr self) {
  auto& st = self->state;
  auto& reg = *st.config.registry;
  auto old = std::stable_partition(st.releases.begin(), st.releases.end(),
                                   [&](const metrics_state::Release& r) { return r.tick + 1 >= st.ticks; });
  for (auto it = old; it != st.releases.end(); ++it) reg.lease_releases(LeaseRelease::demand_fell).inc();
  st.releases.erase(old, st.releases.end());
}

void set_sets(self_ptr self) {
  auto& st = self->state;
  st.config.registry->recommendations_outstanding().set(static_cast<double>(st.recommended.size()));
  st.config.registry->vms_unsatisfied().set(static_cast<double>(st.unsatisfied.size()));
}

// The planner's view into the gauges.
void apply_view(self_ptr self, const PlannerView& view) {
  auto& st = self->state;
  auto& reg = *st.config.registry;
  std::map<std::string, std::int64_t> borrowed, lag;
  std::map<std::pair<std::string, LeaseState>, std::int64_t> leases;
  std::map<std::string, std::string> host_of;
  for (const auto& v : view.vms) {
    host_of[v.name] = v.host;
    borrowed[v.host] += v.borrowed_mib;
    // A recommendation stands until the VM no longer borrows (it moved, or
    // its demand fell): the VM actor forgets it at the same moment.
    if (v.borrowed_mib == 0) st.recommended.erase(v.name);
    bool met = v.demand_mib <= v.local_mib + v.borrowed_mib && v.demand_cpu_mhz <= v.local_cpu_mhz;
    if (met) st.unsatisfied.erase(v.name);
  }
  for (const auto& l : view.leases) ++leases[{l.donor, l.state}];
  for (const auto& [vm, bytes] : st.mirror_lag)
    if (auto h = host_of.find(vm); h != host_of.end()) lag[h->second] += static_cast<std::int64_t>(bytes);
  for (const auto& h : view.hosts) {
    auto it = st.hosts.find(h.name);
    // A host that joined at run time gets its series when the view first has it.
    if (it == st.hosts.end()) it = st.hosts.emplace(h.name, reg.host(h.name)).first;
    const auto& m = it->second;
    m.memory_capacity_bytes.set_mib(h.memory_mib);
    m.cpu_capacity_hertz.set_mhz(h.cpu_mhz);
    m.up.set(h.up ? 1 : 0);
    m.memory_used_bytes.set_mib(h.used_mib);
    m.memory_lent_bytes.set_mib(h.lent_mib);
    m.cpu_used_hertz.set_mhz(h.used_cpu_mhz);
    m.memory_borrowed_bytes.set_mib(borrowed[it->first]);
    for (auto s : metrics::lease_gauge_states)
      m.leases_in(s).set(static_cast<double>(leases[{it->first, s}]));
    m.mirror_lag_bytes.set(static_cast<double>(lag[it->first]));
  }
  reg.mirrors_active().set(static_cast<double>(view.mirrors.size()));
  set_sets(self);
}

void ask_view(self_ptr self) {
  self->request(self->state.planner, defaults::request_timeout, atom::get::value)
      .then([=](const PlannerView& view) { apply_view(self, view); }, [](caf::error&) {});
}

void sample(self_ptr self) {
  auto& st = self->state;
  ++st.ticks;
  sample_data_path(self);
  settle_releases(self);
  if (!st.config.hosts) return;
  if (st.planner) return ask_view(self);
  if (!st.supervisor) return;
  // The planner is never restarted on its own, so one answer is enough.
  self->request(st.supervisor, defaults::request_timeout, atom::get::value, ChildKind::planner, std::uint64_t{0})
      .then(
          [=](caf::actor a) {
            self->state.planner = caf::actor_cast<planner_actor>(a);
            if (self->state.planner) ask_view(self);
          },
          [](caf::error&) {});
}

void count(self_ptr self, const LogEvent& e) {
  auto& st = self->state;
  auto& reg = *st.config.registry;
  const auto& sc = st.config.scenario;
  if (e.event == "need_detected") {
    reg.detections().inc();
  } else if (e.event == "lease_granted") {
    reg.lease_grants(transport_between(sc, e.donor, e.host)).inc();
    st.unsatisfied.erase(e.vm);
  } else if (e.event == "lease_rehomed") {
    // One failed lease moves whole onto one new lease (policy's rehome_choice).
    reg.lease_grants(transport_between(sc, e.donor, e.host)).inc();
    reg.lease_releases(LeaseRelease::rehomed).inc();
  } else if (e.event == "lease_released") {
    st.releases.push_back({e.vm, e.donor, st.ticks});
  } else if (e.event == "vm_migrated") {
    // What the new host lent the VM is local to it now: those leases ended by the move.
    auto moved = std::stable_partition(st.releases.begin(), st.releases.end(), [&](const metrics_state::Release& r) {
      return !(r.vm == e.vm && r.donor == e.host);
    });
    for (auto it = moved; it != st.releases.end(); ++it) reg.lease_releases(LeaseRelease::vm_migrated).inc();
    st.releases.erase(moved, st.releases.end());
    st.unsatisfied.erase(e.vm);
  } else if (e.event == "memory_reclaimed") {
    reg.lease_releases(LeaseRelease::reclaimed).inc();
  } else if (e.event == "failover_to_mirror") {
    reg.failovers().inc();
  } else if (e.event == "mirror_failed") {
    reg.mirror_failures().inc();
  } else if (e.event == "memory_lost") {
    reg.memory_lost().inc();
  } else if (e.event == "unsatisfied") {
    st.unsatisfied.insert(e.vm);
  } else if (e.event == "migration_recommended") {
    // Needs are counted as decisions by the planner; recommendations come by another road.
    reg.decisions(policy::DecisionKind::recommend_migration).inc();
    reg.recommendations().inc();
    st.recommended.insert(e.vm);
  }
  set_sets(self);
}

}  // namespace

metrics_actor::behavior_type metrics_recorder(metrics_actor::stateful_pointer<metrics_state> self,
                                              MetricsConfig config) {
  auto& st = self->state;
  st.config = std::move(config);
  st.clock.start = self->clock().now();
  st.clock.speed = st.config.speed;
  st.clock.origin_s = st.config.origin_s;
  // Capacities are the scenario's and do not change; the rest waits for the first view.
  if (st.config.hosts)
    for (const auto& h : st.config.scenario.hosts) {
      auto m = st.config.registry->host(h.name);
      m.up.set(h.up ? 1 : 0);
      m.memory_capacity_bytes.set_mib(h.memory_mib);
      m.cpu_capacity_hertz.set_mhz(h.cpu_mhz);
      st.hosts.emplace(h.name, m);
    }
  self->set_down_handler([=](caf::down_msg&) { self->quit(); });
  // An agent does not know the scenario clock's speed before it joins, and
  // samples only its own data path, which is cheap: once a second.
  caf::timespan period =
      st.config.hosts ? std::max(st.clock.after(static_cast<double>(st.config.scenario.settings.sample_period_s)),
                                 caf::timespan(min_period))
                      : caf::timespan(std::chrono::seconds(1));
  self->send(self, atom::tick::value);
  return {
      [=](atom::event, const LogEvent& e) { count(self, e); },
      [=](atom::tick) {
        sample(self);
        self->delayed_send(self, period, atom::tick::value);
      },
      // Nothing stops this actor but its owner going down: it is nobody's child.
      [=](atom::rebind, supervisor_actor owner) {
        self->monitor(owner);
        self->state.supervisor = std::move(owner);
      },
      [=](atom::rebind, agent_actor owner) { self->monitor(owner); },
  };
}

Expected<std::unique_ptr<metrics::HttpExposer>> start_metrics_server(const MetricsOptions& options) {
  if (!options.registry || !options.serve) return std::unique_ptr<metrics::HttpExposer>{};
  StopSignalsBlocked blocked;
  return options.serve();
}

// The only way the actor is made: without a registry there is nothing to do.
metrics_actor spawn_metrics(caf::actor_system& sys, const MetricsOptions& options, const policy::Scenario& scenario,
                            double speed, double origin_s, std::shared_ptr<DataPlane> plane, bool hosts) {
  if (!options.registry) return {};
  return sys.spawn(metrics_recorder,
                   MetricsConfig{options.registry.get(), scenario, speed, origin_s, std::move(plane), hosts});
}

void bind_metrics(const metrics_actor& m, const supervisor_actor& owner) {
  if (m) caf::anon_send(m, atom::rebind::value, owner);
}

void bind_metrics(const metrics_actor& m, const agent_actor& owner) {
  if (m) caf::anon_send(m, atom::rebind::value, owner);
}

}  // namespace memlend
