#include "actors/host.hpp"

#include "actors/defaults.hpp"
#include "core/text.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <numeric>
#include <optional>

namespace memlend {

namespace {

std::int64_t sum(const std::vector<std::int64_t>& v) { return std::accumulate(v.begin(), v.end(), std::int64_t{0}); }

template <class K, class V>
bool erase_key(std::vector<K>& keys, std::vector<V>& values, K key) {
  auto it = std::find(keys.begin(), keys.end(), key);
  if (it == keys.end()) return false;
  values.erase(values.begin() + (it - keys.begin()));
  keys.erase(it);
  return true;
}

// Stops holding room for a VM that was to move in; returns the room held.
std::optional<std::pair<std::int64_t, std::int64_t>> take_arrival(HostCheckpoint& l, std::uint32_t vm) {
  auto it = std::find(l.arriving_vms.begin(), l.arriving_vms.end(), vm);
  if (it == l.arriving_vms.end()) return std::nullopt;
  auto i = it - l.arriving_vms.begin();
  std::pair<std::int64_t, std::int64_t> room{l.arriving_mem[static_cast<std::size_t>(i)],
                                             l.arriving_cpu[static_cast<std::size_t>(i)]};
  l.arriving_mem.erase(l.arriving_mem.begin() + i);
  l.arriving_cpu.erase(l.arriving_cpu.begin() + i);
  l.arriving_vms.erase(it);
  return room;
}

using self_ptr = host_proxy_actor::stateful_pointer<host_actor_state>;

// Arms the silence timer again: silence for this long means the host (or the
// way to it) is gone.
void hear(self_ptr self) {
  auto& st = self->state;
  double patience = st.options.period_s * st.options.heartbeat_misses;
  self->delayed_send(self, st.options.clock.after(patience), atom::silence::value, ++st.beat);
}

// An agent speaks for its own host only: its samples are of VMs there,
// whatever they say. A VM it names is the controller's to number; one named
// for the first time is admitted and its samples count from the next one.
std::vector<platform::VmSample> own_vms(self_ptr self, const std::vector<platform::VmSample>& vms) {
  auto& st = self->state;
  std::uint32_t h = st.ledger.host;
  std::vector<platform::VmSample> out;
  for (auto v : vms) {
    v.host = h;
    // The node's own words go into logs, events and the store: one line, bounded.
    if (v.reason.size() > platform::vm_reason_max) v.reason.resize(platform::vm_reason_max);
    if (!is_one_line(v.reason)) v.reason = one_line(v.reason);
    if (v.name.empty()) {
      out.push_back(std::move(v));
      continue;
    }
    if (auto it = st.vm_ids.find(v.name); it != st.vm_ids.end()) {
      v.vm = it->second;
      out.push_back(std::move(v));
      continue;
    }
    // Sent on unnumbered, which no VM is, so that the driver knows the name
    // is listed (the VM runs) while its number is on its way.
    v.vm = ~0u;
    out.push_back(v);
    if (!st.admitting.insert(v.name).second) continue;
    std::string name = v.name;
    self->request(st.supervisor, defaults::request_timeout, atom::admit::value, name, h)
        .then(
            [=](std::uint32_t id) {
              self->state.admitting.erase(name);
              self->state.vm_ids[name] = id;
            },
            [=](caf::error&) { self->state.admitting.erase(name); });
  }
  return out;
}

}  // namespace

std::int64_t host_actor_state::lent() const { return sum(ledger.lease_mib) + sum(ledger.pending_mib); }
std::int64_t host_actor_state::arriving_mem() const { return sum(ledger.arriving_mem); }
std::int64_t host_actor_state::arriving_cpu() const { return sum(ledger.arriving_cpu); }

std::int64_t host_actor_state::lendable() const {
  if (!ledger.up || !spec.data_path) return 0;
  return std::max<std::int64_t>(0, spec.memory_mib - ledger.used_mem - lent() - arriving_mem() - spec.reserved_mib);
}

host_proxy_actor::behavior_type host(host_proxy_actor::stateful_pointer<host_actor_state> self, policy::Host spec,
                                     HostCheckpoint last, HostOptions options, planner_actor planner,
                                     supervisor_actor supervisor, driver_actor driver) {
  auto& st = self->state;
  st.spec = std::move(spec);
  st.ledger = std::move(last);
  st.options = options;
  st.planner = planner;
  st.supervisor = supervisor;
  st.driver = driver;
  auto save = [self] {
    self->send(self->state.supervisor, atom::checkpoint::value, ChildKind::host,
               std::uint64_t{self->state.ledger.host}, caf::make_message(self->state.ledger));
  };
  return {
      [=](atom::admit, const HostFacts& facts) {
        // Its name and whether it is up are not the agent's to change.
        auto& spec = self->state.spec;
        std::string name = spec.name;
        spec = host_of(facts, spec.up);
        spec.name = std::move(name);
      },
      [=](atom::health, const platform::HostSample& s) {
        auto& l = self->state.ledger;
        bool was_up = l.up;
        l.used_mem = s.used_mem;
        l.used_cpu = s.used_cpu;
        l.up = s.up;
        l.seen = true;
        if (was_up && !s.up) self->send(self->state.planner, atom::hostdown::value, l.host);
        if (!was_up && s.up) self->send(self->state.planner, atom::hostup::value, l.host);
        if (was_up != s.up) save();
      },
      [=](atom::reserve, std::uint64_t lease, std::int64_t mib) {
        auto& st = self->state;
        if (mib <= 0 || st.lendable() < mib) return false;
        st.ledger.pending_ids.push_back(lease);
        st.ledger.pending_mib.push_back(mib);
        save();
        return true;
      },
      [=](atom::reservevm, std::uint32_t vm, std::int64_t mem, std::int64_t cpu) {
        auto& st = self->state;
        auto& l = st.ledger;
        if (!l.up) return false;
        // A VM moving in may use the reserve: that is what the reserve is for.
        std::int64_t free_mem = st.spec.memory_mib - l.used_mem - st.lent() - st.arriving_mem();
        std::int64_t free_cpu = st.spec.cpu_mhz - l.used_cpu - st.arriving_cpu();
        if (free_mem < mem || free_cpu < cpu) return false;
        l.arriving_vms.push_back(vm);
        l.arriving_mem.push_back(mem);
        l.arriving_cpu.push_back(cpu);
        save();
        return true;
      },
      [=](atom::commit, std::uint64_t lease) {
        auto& l = self->state.ledger;
        auto it = std::find(l.pending_ids.begin(), l.pending_ids.end(), lease);
        if (it == l.pending_ids.end()) return;
        std::int64_t mib = l.pending_mib[static_cast<std::size_t>(it - l.pending_ids.begin())];
        erase_key(l.pending_ids, l.pending_mib, lease);
        l.lease_ids.push_back(lease);
        l.lease_mib.push_back(mib);
        save();
      },
      [=](atom::cancel, std::uint64_t lease) {
        auto& l = self->state.ledger;
        if (erase_key(l.pending_ids, l.pending_mib, lease)) save();
      },
      [=](atom::commit, atom::migrate, std::uint32_t vm, std::int64_t folded) {
        // The VM now runs here: count it as used until telemetry says what it
        // uses, with what this host lent it before, which is local now.
        auto& l = self->state.ledger;
        if (auto room = take_arrival(l, vm)) {
          l.used_mem += room->first + folded;
          l.used_cpu += room->second;
          save();
        }
      },
      [=](atom::cancel, atom::migrate, std::uint32_t vm) {
        if (take_arrival(self->state.ledger, vm)) save();
      },
      [=](atom::release, std::uint64_t lease) {
        auto& l = self->state.ledger;
        if (erase_key(l.lease_ids, l.lease_mib, lease) || erase_key(l.pending_ids, l.pending_mib, lease)) save();
      },
      [=](atom::get) { return self->state.ledger; },
      [=](atom::telemetry, const platform::HostSample& s, const std::vector<platform::VmSample>& vms) {
        auto& st = self->state;
        st.ledger.used_mem = s.used_mem;
        st.ledger.used_cpu = s.used_cpu;
        st.ledger.seen = true;
        if (!st.ledger.up) {
          st.ledger.up = true;
          self->send(st.planner, atom::hostup::value, st.ledger.host);
          save();
        }
        hear(self);
        self->send(st.driver, atom::sample::value, st.ledger.host, s.lists_every_vm, own_vms(self, vms));
      },
      [=](atom::alive) {
        // Its agent still reads its node (a slow hook, a hypervisor slow to
        // answer): it is alive. Only a host that has sent a reading is up.
        auto& st = self->state;
        if (!st.ledger.up || caf::actor_cast<caf::actor>(self->current_sender()) != st.agent) return;
        hear(self);
      },
      [=](atom::silence, std::uint64_t beat) {
        auto& st = self->state;
        if (beat != st.beat || !st.ledger.up) return;
        st.ledger.up = false;
        self->send(st.planner, atom::hostdown::value, st.ledger.host);
        save();
      },
      [=](atom::bind, caf::actor agent, std::uint64_t incarnation) {
        auto& st = self->state;
        // A new incarnation while the host counted as up: the agent restarted
        // and whatever it lent died with its process.
        if (st.incarnation != 0 && incarnation != st.incarnation && st.ledger.up) {
          st.ledger.up = false;
          ++st.beat;
          self->send(st.planner, atom::hostdown::value, st.ledger.host);
          save();
        }
        st.agent = std::move(agent);
        st.incarnation = incarnation;
      },
      [=](atom::mirrorfail, const std::string& vm, const std::string& why) {
        // The planner checks that the VM runs on this host: an agent speaks
        // for its own VMs only.
        self->send(self->state.planner, atom::mirrorfail::value, self->state.ledger.host, vm, why);
      },
      [=](atom::fence, const std::vector<std::uint64_t>& keep) {
        if (self->state.agent)
          self->send(caf::actor_cast<agent_actor>(self->state.agent), atom::fence::value, keep);
      },
  };
}

}  // namespace memlend
