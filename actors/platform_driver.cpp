#include "actors/platform_driver.hpp"

#include "actors/defaults.hpp"
#include "actors/registrar.hpp"
#include "core/text.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <cmath>
#include <set>

namespace memlend {

namespace {

using self_ptr = driver_actor::stateful_pointer<driver_state>;

// Tells the agents concerned where a VM runs and what it borrows now: its
// host (and the one it left), and every donor it had or has. Each learns only
// the leases it is party to: the VM's host all of them, a donor its own.
void named_host(const driver_state& st, RemoteState& r, std::uint32_t h) {
  if (h < st.config.host_names.size()) r.host_names[h] = st.config.host_names[h];
}

void tell(self_ptr self, std::uint32_t vm, std::vector<std::uint32_t> concerned) {
  auto& st = self->state;
  RemoteState r = st.remote[vm];
  for (auto& l : r.leases) l.recipient = r.host;
  if (st.config.plane) add_lease_secrets(r.leases, *st.config.plane, st.config.host_names);
  concerned.push_back(r.host);
  for (const auto& l : r.leases) concerned.push_back(l.donor);
  std::sort(concerned.begin(), concerned.end());
  concerned.erase(std::unique(concerned.begin(), concerned.end()), concerned.end());
  for (auto h : concerned)
    if (h < st.agents.size() && st.agents[h]) {
      RemoteState told{r.vm, r.host, leases_of_host(r.leases, h), r.name, {}};
      named_host(st, told, told.host);
      for (const auto& l : told.leases) named_host(st, told, l.donor);
      self->send(st.agents[h], atom::attach::value, std::move(told));
    }
}

void route(self_ptr self, const std::vector<platform::VmSample>& vms) {
  auto& st = self->state;
  // The planner first, so its view is as new as what the VM actors see.
  if (st.planner) self->send(st.planner, atom::sample::value, vms);
  for (const auto& v : vms)
    if (v.vm < st.vms.size() && st.vms[v.vm]) self->send(st.vms[v.vm], atom::sample::value, v);
}

// A VM placed on host h that h's agent, listing all it runs, no longer
// lists: it stopped, was destroyed or moved where no agent has named it yet.
// It is sampled as wanting nothing and holding only what it borrows, so that
// its VM actor sees a surplus and, after `detect_samples` such samples as
// any other, its lent memory goes back to its donors. Were it to run again,
// its next real sample says what it needs.
// `sent` is all the agent sent, VMs its host actor has not numbered yet
// included: a VM is listed by its name as well as by its number.
void add_stopped(driver_state& st, std::uint32_t h, const std::vector<platform::VmSample>& sent,
                 std::vector<platform::VmSample>& samples) {
  std::vector<bool> listed(st.remote.size());
  std::set<std::string> names;
  for (const auto& s : sent) {
    if (s.vm < listed.size()) listed[s.vm] = true;
    if (!s.name.empty()) names.insert(s.name);
  }
  for (const auto& r : st.remote) {
    if (r.host != h || r.vm >= listed.size() || listed[r.vm] || names.count(r.name)) continue;
    platform::VmSample s;
    s.vm = r.vm;
    s.host = h;
    s.name = r.name;
    for (const auto& l : r.leases)
      if (l.state == LeaseState::active || l.state == LeaseState::draining) s.remote_mem += l.mib;
    samples.push_back(std::move(s));
    st.unlisted.insert(r.vm);
  }
}

bool report(self_ptr self, const Expected<void>& r) {
  if (r) return true;
  LogEvent e;
  e.t_s = self->state.config.clock.now(self->clock());
  e.text = "platform refused: " + r.error().message;
  self->send(self->state.sink, atom::event::value, std::move(e));
  return false;
}

// The VM runs at `target` now: what the target lent it is its own memory
// there, its other leases follow it, and every agent concerned is told.
void moved(self_ptr self, std::uint32_t vm, std::uint32_t target) {
  auto& st = self->state;
  std::vector<std::uint32_t> was{st.remote[vm].host};
  st.remote[vm].host = target;
  auto& ls = st.remote[vm].leases;
  for (const auto& l : ls)
    if (l.donor == target) was.push_back(target);
  ls.erase(std::remove_if(ls.begin(), ls.end(), [&](const LeaseInfo& l) { return l.donor == target; }), ls.end());
  tell(self, vm, was);
}

std::string host_name(const driver_state& st, std::uint32_t h) {
  return h < st.config.host_names.size() ? st.config.host_names[h] : "host " + std::to_string(h);
}

// A migration between two agents' nodes: the target readies itself and says
// where to send the VM, then the VM's node sends it there. The record
// changes only once the VM's node says it runs at the target; a migration
// that did not happen leaves it where it was, and the target undoes its side.
caf::result<bool> migrate_in_cluster(self_ptr self, std::uint32_t vm, std::uint32_t target) {
  auto& st = self->state;
  if (vm >= st.remote.size()) return false;
  std::uint32_t from = st.remote[vm].host;
  auto agent_of = [&](std::uint32_t h) { return h < st.agents.size() ? st.agents[h] : agent_actor{}; };
  agent_actor source = agent_of(from), destination = agent_of(target);
  std::string name = st.remote[vm].name.empty() ? "VM " + std::to_string(vm) : st.remote[vm].name;
  std::string to = host_name(st, target);
  if (!source || !destination)
    return report(self, Error{"migrating " + name + ": the agent of " + host_name(st, source ? target : from) +
                                  " has not joined",
                              ErrorCode::unavailable});
  auto rp = self->make_response_promise<bool>();
  auto fail = [self, rp](const std::string& why) mutable {
    rp.deliver(report(self, Error{why, ErrorCode::refused}));
  };
  self->request(destination, defaults::receive_timeout, atom::reserve::value, atom::migrate::value, name)
      .then(
          [=](bool ready, const std::string& address) mutable {
            if (!ready) return fail(to + " cannot take " + name + " in: " + one_line(address.substr(0, 400)));
            self->request(source, defaults::migration_timeout, atom::migrate::value, name, to, address)
                .then(
                    [=](bool done, const std::string& why) mutable {
                      if (done) {
                        moved(self, vm, target);
                        rp.deliver(true);
                        return;
                      }
                      self->send(destination, atom::cancel::value, atom::migrate::value, name);
                      fail("migrating " + name + " to " + to + ": " + one_line(why.substr(0, 400)));
                    },
                    [=](caf::error& e) mutable {
                      self->send(destination, atom::cancel::value, atom::migrate::value, name);
                      fail("migrating " + name + " to " + to + ": no answer from its node (" + caf::to_string(e) +
                           ")");
                    });
          },
          [=](caf::error& e) mutable { fail(to + " did not answer whether it takes " + name + " in (" +
                                            caf::to_string(e) + ")"); });
  return rp;
}

// A VM that its host's agent lists no more and another host's agent lists
// was moved by its hypervisor, not by memlend. The planner records it where
// it runs once it borrows nothing (its leases go back as a stopped VM's do),
// so that a node naming another's VM gets no lease with it.
void notice_moves(self_ptr self, std::uint32_t h, const std::vector<platform::VmSample>& vms) {
  auto& st = self->state;
  for (const auto& v : vms) {
    if (v.vm >= st.remote.size() || st.remote[v.vm].host == h || !st.unlisted.count(v.vm) ||
        !st.remote[v.vm].leases.empty() || !st.planner || !st.moving.insert(v.vm).second)
      continue;
    std::uint32_t vm = v.vm;
    self->request(st.planner, defaults::request_timeout, atom::moved::value, vm, h)
        .then(
            [=](bool recorded) {
              auto& st = self->state;
              st.moving.erase(vm);
              if (!recorded || st.remote[vm].host == h) return;
              st.unlisted.erase(vm);
              moved(self, vm, h);
            },
            [=](caf::error&) { self->state.moving.erase(vm); });
  }
}

}  // namespace

driver_actor::behavior_type platform_driver(driver_actor::stateful_pointer<driver_state> self, DriverConfig config,
                                            std::shared_ptr<platform::Platform> platform, std::size_t hosts,
                                            std::vector<RemoteState> start, supervisor_actor supervisor,
                                            sink_actor sink, planner_actor planner) {
  auto& st = self->state;
  st.config = config;
  st.platform = std::move(platform);
  st.hosts.resize(hosts);
  st.vms.resize(start.size());
  st.remote = std::move(start);
  st.supervisor = supervisor;
  st.sink = sink;
  st.planner = planner;
  return {
      [=](atom::tick) {
        auto& st = self->state;
        if (st.stopped) return;
        double t = st.config.clock.now(self->clock());
        // Timers fire late, never early; a tick a hair early still counts as its slot.
        constexpr double slack = 1e-6;
        if (!st.config.cluster) {
          platform::Telemetry tel = st.platform->sample(t + slack);
          for (const auto& h : tel.hosts)
            if (st.hosts[h.host]) self->send(st.hosts[h.host], atom::health::value, h);
          route(self, tel.vms);
        }
        if (st.config.until_s && t + slack >= *st.config.until_s) {
          st.stopped = true;
          self->send(st.supervisor, atom::shutdown::value);
          return;
        }
        double period = st.config.period_s;
        double next = (std::floor((t + slack) / period) + 1) * period;
        if (st.config.until_s) next = std::min(next, *st.config.until_s);
        self->delayed_send(self, st.config.clock.after(next - t), atom::tick::value);
      },
      [=](atom::attach, std::uint32_t vm, std::uint32_t donor, std::int64_t mib, std::uint64_t lease) {
        auto& st = self->state;
        if (!st.config.cluster) return report(self, st.platform->attach_remote(vm, donor, mib));
        LeaseInfo l;
        l.id = lease;
        l.vm = vm;
        l.donor = donor;
        l.recipient = st.remote[vm].host;
        l.mib = mib;
        l.state = LeaseState::active;
        st.remote[vm].leases.push_back(l);
        tell(self, vm, {});
        return true;
      },
      [=](atom::detach, std::uint32_t vm, std::uint32_t donor, std::int64_t mib, std::uint64_t lease) {
        auto& st = self->state;
        if (!st.config.cluster) return report(self, st.platform->detach_remote(vm, donor, mib));
        auto& ls = st.remote[vm].leases;
        std::vector<std::uint32_t> was{donor};
        ls.erase(std::remove_if(ls.begin(), ls.end(), [&](const LeaseInfo& l) { return l.id == lease; }), ls.end());
        tell(self, vm, was);
        return true;
      },
      [=](atom::migrate, std::uint32_t vm, std::uint32_t target) -> caf::result<bool> {
        auto& st = self->state;
        if (!st.config.cluster) return report(self, st.platform->migrate(vm, target));
        return migrate_in_cluster(self, vm, target);
      },
      // From host actors, in a cluster: an agent's telemetry.
      [=](atom::sample, std::uint32_t h, bool every_vm, const std::vector<platform::VmSample>& vms) {
        auto& st = self->state;
        // Agents are cluster mode's; a VM not numbered yet (~0u) goes no further.
        if (!st.config.cluster) return;
        notice_moves(self, h, vms);
        auto own = samples_of_host(st.remote, vms);
        for (const auto& v : own) st.unlisted.erase(v.vm);
        if (every_vm) add_stopped(st, h, vms, own);
        route(self, own);
      },
      [=](atom::commit, const LeaseInfo& granted) {
        auto& st = self->state;
        if (granted.vm >= st.remote.size()) return;
        for (auto& l : st.remote[granted.vm].leases)
          if (l.id == granted.id) {
            l = granted;
            tell(self, granted.vm, {});
          }
      },
      [=](atom::admit, std::uint32_t h, const std::string& name) {
        auto& st = self->state;
        if (h != st.hosts.size()) return;
        st.hosts.emplace_back();
        // host_names is kept only in cluster mode, where lease secrets need it.
        if (st.config.cluster) st.config.host_names.push_back(name);
      },
      [=](atom::admit, std::uint32_t v, const std::string& name, std::uint32_t host) {
        auto& st = self->state;
        if (v != st.vms.size()) return;
        st.vms.emplace_back();
        st.remote.push_back(RemoteState{v, host, {}, name, {}});
      },
      [=](atom::rebind, std::uint32_t h, host_actor handle) {
        if (h < self->state.hosts.size()) self->state.hosts[h] = std::move(handle);
      },
      [=](atom::rebind, std::uint32_t v, vm_actor handle) {
        if (v < self->state.vms.size()) self->state.vms[v] = std::move(handle);
      },
      [=](atom::rebind, std::uint32_t h, agent_actor handle) {
        auto& st = self->state;
        if (h >= st.hosts.size()) return;
        if (st.agents.size() < st.hosts.size()) st.agents.resize(st.hosts.size());
        st.agents[h] = std::move(handle);
      },
      [=](atom::shutdown) {
        self->state.stopped = true;
        self->quit();
      },
  };
}

}  // namespace memlend
