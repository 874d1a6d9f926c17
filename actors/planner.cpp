#include "actors/planner.hpp"

#include "actors/planner_jobs.hpp"
#include "journal/journal.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <set>

namespace memlend {

using namespace memlend::policy;

std::vector<LeaseInfo> initial_leases(const Scenario& s) {
  std::vector<LeaseInfo> out;
  std::uint64_t id = 1;
  for (VmId v = 0; v < s.vms.size(); ++v)
    for (const auto& p : s.vms[v].remote) {
      LeaseInfo l;
      l.id = id++;
      l.vm = v;
      l.donor = p.donor;
      l.recipient = s.vms[v].host;
      l.mib = p.mib;
      l.state = LeaseState::active;
      l.epoch = 1;
      l.transport = s.hosts[p.donor].rdma && s.hosts[l.recipient].rdma ? Transport::rdma : Transport::tcp;
      out.push_back(l);
    }
  return out;
}

StartState fresh_start(const Scenario& s, double origin_s) {
  StartState st;
  st.leases = initial_leases(s);
  st.next_lease = st.leases.empty() ? 1 : st.leases.back().id + 1;
  for (VmId v = 0; v < s.vms.size(); ++v) {
    st.first_hosts.push_back(s.vms[v].host);
    if (!s.vms[v].remote.empty()) st.remote_since[v] = origin_s - static_cast<double>(s.vms[v].remote_for_s);
  }
  return st;
}

using namespace memlend::planner_parts;

namespace {

// Telemetry keeps the view true. It waits its turn like any job: a sample
// must not change the view a transaction under way decided on.
JobPlan sample_job(self_ptr self, std::vector<platform::VmSample> samples) {
  return write_only([=](JobDone done) {
    for (const auto& s : samples) {
      self->state.view->observe(s.vm, s.host, s.demand_mem, s.demand_cpu, s.local_mem, s.local_cpu);
      if (!s.reason.empty()) self->state.demand_reasons[s.vm] = s.reason;
    }
    // The clock's heartbeat: a restart resumes near where this run
    // stopped, not at its last decision.
    auto& st = self->state;
    double t = now(self);
    double half = static_cast<double>(st.config.scenario.settings.sample_period_s) / 2;
    if (st.config.store && !samples.empty() && t - st.last_beat >= half) {
      st.last_beat = t;
      auto txn = begin(self);
      txn->batch.scenario(self->state.config.fingerprint);
      // The support views read VMs' and hosts' figures: keep them current.
      for (VmId v = 0; v < st.view->vm_count(); ++v) {
        store::VmRecord r = vm_record(self, v);
        std::string key = std::to_string(r.host) + "/" + std::to_string(r.memory_mib) + "/" +
                          std::to_string(r.cpu_mhz) + "/" + std::to_string(r.local_mib) + "/" +
                          std::to_string(r.remote_since_s.value_or(-1));
        if (st.written_vm[v] == key) continue;
        st.written_vm[v] = key;
        txn->batch.put(r);
      }
      for (HostId h = 0; h < st.config.scenario.hosts.size(); ++h) {
        const HostState& hs = st.view->host_state(h);
        std::string key = std::to_string(hs.up) + "/" + std::to_string(hs.used_mem) + "/" + std::to_string(hs.used_cpu);
        if (st.written_host[h] == key) continue;
        st.written_host[h] = key;
        store::HostRecord r = host_record(st.config.scenario.hosts[h], h, hs.up);
        r.used_mib = hs.used_mem;
        r.used_mhz = hs.used_cpu;
        txn->batch.put(r);
      }
      return persist(self, txn, done);
    }
    done();
  });
}

// A host joins (or rejoins with new facts) and a VM appears between jobs,
// never inside one: a transaction decided on the view it started with.
// Both are written to the store, so a restarted controller knows them.
JobPlan admit_host_job(self_ptr self, std::uint32_t id, HostFacts facts, bool up) {
  return write_only([=](JobDone done) {
    auto& st = self->state;
    auto& hosts = st.config.scenario.hosts;
    if (id > hosts.size()) {
      note(self, "error: host " + facts.name + " admitted as " + std::to_string(id) + " out of order; ignored");
      return done();
    }
    if (id == hosts.size()) {
      hosts.push_back(host_of(facts, up));
      st.view->add_host(hosts.back());
    } else {
      hosts[id] = host_of(facts, hosts[id].up);
      st.view->update_host(id, hosts[id]);
    }
    auto txn = begin(self);
    txn->batch.put(host_record(hosts[id], id, st.view->host_state(id).up));
    persist(self, txn, done);
  });
}

JobPlan admit_vm_job(self_ptr self, std::uint32_t id, std::string name, std::uint32_t host) {
  return write_only([=](JobDone done) {
    auto& st = self->state;
    if (id != st.view->vm_count() || host >= st.view->hosts().size()) {
      note(self, "error: VM " + name + " admitted as " + std::to_string(id) + " out of order; ignored");
      return done();
    }
    policy::Vm v;
    v.name = name;
    v.host = host;
    st.config.scenario.vms.push_back(v);
    st.config.start.first_hosts.resize(id, no_host);
    st.config.start.first_hosts.push_back(host);
    st.view->add_vm(v);
    auto txn = begin(self);
    txn->batch.put(vm_record(self, id));
    persist(self, txn, done);
  });
}

// A VM its node's hypervisor moved (a migration memlend did not make, a
// restart elsewhere), found by the platform driver: recorded where it runs
// now, as a migration is, once it borrows nothing.
JobPlan moved_job(self_ptr self, std::uint32_t vm, std::uint32_t host, caf::typed_response_promise<bool> rp) {
  return write_only([=](JobDone done) mutable {
    auto& st = self->state;
    if (vm >= st.view->vm_count() || host >= st.view->hosts().size() || st.view->vm(vm).host == host ||
        !st.view->vm(vm).borrowed.empty() || !st.view->host_state(host).up) {
      rp.deliver(false);
      return done();
    }
    const policy::VmState& v = st.view->vm(vm);
    policy::Decision d;
    d.kind = policy::DecisionKind::migrate;
    d.vm = vm;
    d.host = v.host;
    d.target = host;
    d.local_mib = v.share_mem;
    std::string from = st.host_name(v.host), to = st.host_name(host);
    d.reason = st.vm_name(vm) + " runs on " + to + " now: " + from + "'s node lists it no more and " + to +
               "'s does, so its hypervisor moved it, not memlend";
    st.view->apply(d);
    auto txn = begin(self);
    emit(self, txn, "vm_migrated", vm, host, std::nullopt, d.local_mib,
         st.vm_name(vm) + " was moved from " + from + " to " + to + " by others; it holds " + fmt_mib(d.local_mib) +
             " there",
         d.reason);
    txn->batch.put(vm_record(self, vm));
    persist(self, txn, [=]() mutable {
      rp.deliver(true);
      done();
    });
  });
}

PlannerView view_of(self_ptr self) {
  auto& st = self->state;
  PlannerView v;
  v.t_s = now(self);
  for (HostId h = 0; h < st.config.scenario.hosts.size(); ++h) {
    const HostState& hs = st.view->host_state(h);
    const auto& facts = st.config.scenario.hosts[h];
    v.hosts.push_back({st.host_name(h), hs.up, hs.used_mem, hs.lent, st.view->lendable(h), hs.used_cpu,
                       facts.memory_mib, facts.cpu_mhz});
  }
  for (VmId i = 0; i < st.view->vm_count(); ++i) {
    const VmState& vs = st.view->vm(i);
    v.vms.push_back({st.vm_name(i), st.host_name(vs.host), vs.demand_mem, vs.share_mem, vs.borrowed_mib(),
                     vs.demand_cpu, vs.share_cpu});
  }
  for (const auto& [id, rec] : st.leases)
    v.leases.push_back({id, st.vm_name(rec.info.vm), st.host_name(rec.info.donor), st.host_name(rec.info.recipient),
                        rec.info.mib, rec.info.state});
  for (const auto& [vm, mib] : st.mirror_mib) v.mirrors.push_back({st.vm_name(vm), mib, mirror_path(self, vm)});
  return v;
}

}  // namespace

planner_actor::behavior_type planner(planner_actor::stateful_pointer<planner_state> self, PlannerConfig config,
                                     supervisor_actor supervisor, sink_actor sink) {
  auto& st = self->state;
  st.config = std::move(config);
  st.view = std::make_unique<Cluster>(st.config.scenario);
  st.supervisor = supervisor;
  st.sink = sink;
  st.hosts.resize(st.config.scenario.hosts.size());
  st.vms.resize(st.config.scenario.vms.size());
  for (const LeaseInfo& l : st.config.start.leases) st.leases[l.id] = {l, lease_actor{}};
  st.next_lease = std::max<std::uint64_t>(st.config.start.next_lease, 1);
  st.recommended = st.config.start.recommended;
  st.remote_since = st.config.start.remote_since;
  // Mirrors of memory borrowed before the run; the supervisor binds their writers.
  for (VmId v = 0; v < st.view->vm_count(); ++v)
    if (std::int64_t mib = st.view->vm(v).borrowed_mib(); mib > 0) {
      st.mirror_mib[v] = mib;
      st.mirrors[v] = mirror_actor{};
    }
  return {
      [=](atom::need, std::uint32_t vm, std::int64_t mem, std::int64_t cpu) {
        auto rp = self->make_response_promise<NeedAnswer>();
        enqueue(self, need_job(self, vm, mem, cpu, rp));
        return rp;
      },
      [=](atom::surplus, std::uint32_t vm, std::int64_t mem, std::int64_t cpu) {
        auto rp = self->make_response_promise<std::int64_t>();
        enqueue(self, surplus_job(self, vm, mem, cpu, rp));
        return rp;
      },
      [=](atom::recommend, std::uint32_t vm, std::int64_t remote_for) -> caf::result<bool> {
        auto& st = self->state;
        st.view->set_remote_for(vm, remote_for);
        Recommendation r = st.view->recommendation(vm);
        if (!r.ok) {
          if (st.news(vm, planner_state::Said::stays, r.blocker + "@" + st.host_name(r.target)))
            note(self, st.vm_name(vm) + " stays on " + st.host_name(st.view->vm(vm).host) + ": " + r.reason,
                 {st.vm_name(vm), st.host_name(st.view->vm(vm).host)});
          return false;
        }
        st.said.erase({vm, planner_state::Said::stays});
        // Said once: a VM recommended before a restart is not recommended again.
        if (st.recommended.count(vm)) return true;
        st.recommended.insert(vm);
        auto txn = begin(self);
        store::RecommendationRecord rec;
        rec.vm = vm;
        rec.target = r.target;
        rec.reason = r.reason;
        txn->batch.put(rec);
        emit(self, txn, "migration_recommended", vm, r.target, std::nullopt, st.view->vm(vm).demand_mem,
             "recommend migrating " + st.vm_name(vm) + " to " + st.host_name(r.target) + ": " + r.reason, r.reason);
        auto rp = self->make_response_promise<bool>();
        persist(self, txn, [=]() mutable { rp.deliver(true); });
        return rp;
      },
      [=](atom::commit, std::uint64_t token, bool ok, const std::string& error) { durable(self, token, ok, error); },
      [=](atom::commit, const LeaseInfo& granted) {
        // A lease actor's grant: how to reach the lease again after a restart.
        auto& st = self->state;
        auto it = st.leases.find(granted.id);
        if (it == st.leases.end() || it->second.info.state != LeaseState::active) return;
        LeaseInfo& l = it->second.info;
        l.data = granted.data;
        auto txn = begin(self);
        txn->batch.put(lease_record(l));
        persist(self, txn, [] {});
      },
      [=](atom::sample, const std::vector<platform::VmSample>& samples) { enqueue(self, sample_job(self, samples)); },
      [=](atom::hostdown, std::uint32_t h) { enqueue(self, host_down_job(self, h)); },
      [=](atom::hostup, std::uint32_t h) { enqueue(self, host_up_job(self, h)); },
      [=](atom::mirrorfail, std::uint32_t from, const std::string& vm, const std::string& why) {
        enqueue(self, mirror_failed_job(self, from, vm, why));
      },
      [=](atom::rebind, std::uint32_t h, host_proxy_actor handle) {
        if (h < self->state.hosts.size()) self->state.hosts[h] = std::move(handle);
      },
      [=](atom::rebind, std::uint32_t v, vm_actor handle) {
        if (v < self->state.vms.size()) self->state.vms[v] = std::move(handle);
      },
      [=](atom::rebind, std::uint64_t id, lease_actor handle) {
        if (auto it = self->state.leases.find(id); it != self->state.leases.end()) it->second.actor = std::move(handle);
      },
      [=](atom::rebind, std::uint32_t v, mirror_actor handle) {
        if (auto it = self->state.mirrors.find(v); it != self->state.mirrors.end()) it->second = std::move(handle);
      },
      [=](atom::rebind, driver_actor handle) { self->state.driver = std::move(handle); },
      [=](atom::admit, std::uint32_t h, const HostFacts& facts, bool up) {
        // The handle vectors grow now: the new actor's rebind follows at once.
        auto& st = self->state;
        if (h == st.hosts.size()) st.hosts.emplace_back();
        enqueue(self, admit_host_job(self, h, facts, up));
      },
      [=](atom::admit, std::uint32_t v, const std::string& name, std::uint32_t host) {
        auto& st = self->state;
        if (v == st.vms.size()) st.vms.emplace_back();
        enqueue(self, admit_vm_job(self, v, name, host));
      },
      [=](atom::moved, std::uint32_t vm, std::uint32_t host) {
        auto rp = self->make_response_promise<bool>();
        enqueue(self, moved_job(self, vm, host, rp));
        return rp;
      },
      [=](atom::join) {
        auto& st = self->state;
        std::vector<LeaseInfo> leases;
        for (const auto& [id, rec] : st.leases)
          if (rec.info.state == LeaseState::active) leases.push_back(rec.info);
        // Those that moved, for agents that rebuild a simulation, and those
        // that borrow, named, for agents of real nodes (the registrar keeps
        // each agent's to what it is party to).
        std::set<VmId> borrowing;
        for (const auto& l : leases) borrowing.insert(l.vm);
        std::vector<Placement> moved;
        for (VmId v = 0; v < st.view->vm_count(); ++v) {
          bool was_moved =
              v < st.config.start.first_hosts.size() && st.view->vm(v).host != st.config.start.first_hosts[v];
          if (was_moved || borrowing.count(v)) moved.push_back({v, st.view->vm(v).host, st.config.scenario.vms[v].name});
        }
        return std::make_tuple(std::move(leases), std::move(moved));
      },
      [=](atom::get) { return view_of(self); },
  };
}

}  // namespace memlend
