#include "actors/planner_txn.hpp"

#include "actors/defaults.hpp"
#include "actors/note.hpp"
#include "journal/journal.hpp"
#include "rdma/mirror.hpp"

#include <caf/all.hpp>

namespace memlend::planner_parts {

using namespace memlend::policy;

double now(self_ptr self) { return self->state.config.clock.now(self->clock()); }

void note(self_ptr self, std::string text, About about) {
  memlend::note(self, self->state.sink, self->state.config.clock, std::move(text), std::move(about));
}

TxnPtr begin(self_ptr self) { return std::make_shared<Txn>(now(self)); }

void emit(self_ptr self, const TxnPtr& txn, std::string event, std::uint32_t vm, std::optional<std::uint32_t> host,
          std::optional<std::uint32_t> donor, std::int64_t mib, std::string text, std::string reason,
          std::uint64_t lease) {
  auto& st = self->state;
  LogEvent e;
  e.t_s = txn->batch.t_s();
  e.event = std::move(event);
  if (vm != ~0u) e.vm = st.vm_name(vm);
  if (host) e.host = st.host_name(*host);
  if (donor) e.donor = st.host_name(*donor);
  e.mib = mib;
  e.text = std::move(text);
  e.reason = std::move(reason);
  e.lease = lease;
  txn->batch.event(event_record(e));
  txn->events.push_back(std::move(e));
}

void act(const TxnPtr& txn, std::function<void()> f) { txn->acts.push_back(std::move(f)); }

// The store cannot take what the planner decided: acting anyway would leave
// the store behind the cluster, so the planner stops and the controller
// restarts from what is durable.
void give_up(self_ptr self, const std::string& why) {
  note(self, "error: the store did not record a decision (" + why + "); stopping");
  self->quit(caf::make_error(caf::sec::runtime_error, "store: " + why));
}

// The events go out in the store's order: the sink hears of them from the
// store's own thread.
void persist(self_ptr self, TxnPtr txn, std::function<void()> then) {
  auto& st = self->state;
  auto carry_out = [self, txn, then] {
    for (auto& a : txn->acts) a();
    then();
  };
  if (!st.config.store || txn->batch.empty()) {
    for (auto& e : txn->events) self->send(st.sink, atom::event::value, e);
    return carry_out();
  }
  std::uint64_t token = ++st.next_token;
  st.pending[token] = carry_out;
  auto me = caf::actor_cast<planner_actor>(self);
  auto sink = st.sink;
  auto events = txn->events;
  auto queued = st.config.store->submit(txn->batch, [me, sink, events, token](const store::Outcome& o) {
    if (o.ok())
      for (const auto& e : events) caf::anon_send(sink, atom::event::value, atom::commit::value, e);
    caf::anon_send(me, atom::commit::value, token, o.ok(), o.error);
  });
  if (!queued) {
    st.pending.erase(token);
    give_up(self, queued.error().message);
  }
}

void durable(self_ptr self, std::uint64_t token, bool ok, const std::string& error) {
  auto& st = self->state;
  auto it = st.pending.find(token);
  if (it == st.pending.end()) return;
  auto then = std::move(it->second);
  st.pending.erase(it);
  if (!ok) return give_up(self, error);
  then();
}

std::string mirror_path(self_ptr self, std::uint32_t vm) {
  return rdma::mirror_path(self->state.config.datastore, self->state.vm_name(vm));
}

store::VmRecord vm_record(self_ptr self, std::uint32_t v) {
  auto& st = self->state;
  const VmState& vs = st.view->vm(v);
  store::VmRecord r;
  r.id = v;
  r.name = st.vm_name(v);
  r.host = vs.host;
  r.memory_mib = vs.demand_mem;
  r.cpu_mhz = vs.demand_cpu;
  r.local_mib = vs.share_mem;
  if (auto it = st.remote_since.find(v); it != st.remote_since.end()) r.remote_since_s = it->second;
  return r;
}

// What a VM's mirror is while it is written: failed once the data path could not.
store::MirrorState mirror_state(self_ptr self, std::uint32_t vm) {
  return self->state.mirror_failed.count(vm) ? store::MirrorState::failed : store::MirrorState::writing;
}

store::MirrorRecord mirror_record(self_ptr self, std::uint32_t vm, std::int64_t mib, store::MirrorState state) {
  store::MirrorRecord r;
  r.vm = vm;
  r.path = mirror_path(self, vm);
  r.bytes = mib * 1024 * 1024;
  r.state = state;
  return r;
}

// With the last lease the VM's remote use ends, and any recommendation with it.
void sync_mirror(self_ptr self, const TxnPtr& txn, std::uint32_t vm) {
  auto& st = self->state;
  std::int64_t mib = st.view->vm(vm).borrowed_mib();
  auto it = st.mirrors.find(vm);
  if (mib > 0 && it == st.mirrors.end()) {
    MirrorInfo m{vm, mib, mirror_path(self, vm), MirrorState::writing};
    st.mirror_mib[vm] = mib;
    // A placeholder handle keeps a second sync from spawning twice.
    st.mirrors[vm] = mirror_actor{};
    txn->batch.put(mirror_record(self, vm, mib, store::MirrorState::writing));
    emit(self, txn, "mirror_created", vm, st.view->vm(vm).host, std::nullopt, mib,
         "mirror of " + st.vm_name(vm) + "'s " + fmt_mib(mib) + " of remote memory created on the shared datastore");
    act(txn, [self, m, vm] {
      self->request(self->state.supervisor, defaults::request_timeout, atom::spawn::value, m)
          .then([=](mirror_actor a) { self->state.mirrors[vm] = a; }, [=](caf::error&) {});
    });
    return;
  }
  if (it == st.mirrors.end()) return;
  if (mib == 0) {
    mirror_actor writer = it->second;
    st.mirrors.erase(it);
    std::int64_t was = st.mirror_mib[vm];
    st.mirror_mib.erase(vm);
    st.mirror_failed.erase(vm);
    txn->batch.put(mirror_record(self, vm, was, store::MirrorState::deleted));
    emit(self, txn, "mirror_deleted", vm, st.view->vm(vm).host, std::nullopt, -1,
         "mirror of " + st.vm_name(vm) + " deleted: it borrows nothing now");
    st.remote_since.erase(vm);
    if (st.recommended.erase(vm)) txn->batch.drop_recommendation(vm);
    act(txn, [self, writer] {
      if (writer) self->send(writer, atom::remove::value);
    });
    return;
  }
  if (st.mirror_mib[vm] != mib) {
    st.mirror_mib[vm] = mib;
    txn->batch.put(mirror_record(self, vm, mib, mirror_state(self, vm)));
    mirror_actor writer = it->second;
    act(txn, [self, writer, mib] {
      if (writer) self->send(writer, atom::resize::value, mib);
    });
  }
}

void start_leases(self_ptr self, const TxnPtr& txn, std::uint32_t vm, const Reserved& r, const char* event,
                  const std::string& reason, std::uint64_t replaces, std::uint64_t epoch) {
  auto& st = self->state;
  HostId recipient = st.view->vm(vm).host;
  std::int64_t per_lease_kib = buffer_kib_per_lease(st.config.scenario.settings);
  bool first = !st.remote_since.count(vm);
  if (first) st.remote_since[vm] = txn->batch.t_s();
  for (std::size_t i = 0; i < r.grants.size(); ++i) {
    const LeaseGrant& g = r.grants[i];
    LeaseInfo info;
    info.id = r.ids[i];
    info.vm = vm;
    info.donor = g.donor;
    info.recipient = recipient;
    info.mib = g.mib;
    info.state = LeaseState::active;
    info.epoch = epoch;
    info.transport = g.transport;
    info.replaces = replaces;
    st.leases[info.id] = {info, lease_actor{}};
    txn->batch.put(lease_record(info));
    std::string text = std::string(event) == "lease_rehomed"
                           ? st.vm_name(vm) + "'s " + fmt_mib(g.mib) + " now lent by " + st.host_name(g.donor) +
                                 " (lease " + std::to_string(info.id) + "), filled from its mirror (" + reason + ")"
                           : st.host_name(g.donor) + " lends " + st.vm_name(vm) + " " + fmt_mib(g.mib) + " over " +
                                 (g.transport == Transport::rdma ? "RDMA" : "TCP") + " (lease " +
                                 std::to_string(info.id) + "), with a local buffer of " +
                                 std::to_string(per_lease_kib) + " KiB on " + st.host_name(recipient);
    emit(self, txn, event, vm, recipient, g.donor, g.mib, std::move(text), reason, info.id);
    act(txn, [self, info] {
      auto& st = self->state;
      self->request(st.supervisor, defaults::request_timeout, atom::spawn::value, info)
          .then(
              [=](lease_actor a) {
                auto it = self->state.leases.find(info.id);
                if (it != self->state.leases.end()) it->second.actor = a;
              },
              [=](caf::error&) {});
      self->request(st.driver, defaults::request_timeout, atom::attach::value, info.vm, info.donor, info.mib, info.id)
          .then([](bool) {}, [](caf::error&) {});
    });
  }
  double since = st.remote_since[vm];
  act(txn, [self, vm, since] { self->send(self->state.vms[vm], atom::granted::value, since); });
}

std::int64_t end_leases(self_ptr self, const TxnPtr& txn, std::uint32_t vm, HostId donor, const char* event,
                        bool detach, std::uint64_t only, bool replaced) {
  auto& st = self->state;
  std::int64_t total = 0;
  for (auto it = st.leases.begin(); it != st.leases.end();) {
    LeaseInfo l = it->second.info;
    if (l.vm != vm || l.donor != donor || (only != 0 && l.id != only)) {
      ++it;
      continue;
    }
    total += l.mib;
    lease_actor actor = it->second.actor;
    l.state = LeaseState::released;
    txn->batch.put(lease_record(l));
    if (event) {
      std::string text = std::string(event) == "memory_reclaimed"
                             ? st.host_name(donor) + " reclaims the " + fmt_mib(l.mib) + " it lent " + st.vm_name(vm) +
                                   " (lease " + std::to_string(l.id) + "): " + st.host_name(l.recipient) + " is down"
                             : st.vm_name(vm) + " gives back the " + fmt_mib(l.mib) + " " + st.host_name(donor) +
                                   " lent it (lease " + std::to_string(l.id) + ")";
      emit(self, txn, event, vm, l.recipient, donor, l.mib, std::move(text), {}, l.id);
    }
    act(txn, [self, actor, l, replaced, detach] {
      auto& st = self->state;
      if (actor) self->send(actor, atom::release::value, replaced);
      self->send(st.hosts[l.donor], atom::release::value, l.id);
      if (detach)
        self->request(st.driver, defaults::request_timeout, atom::detach::value, l.vm, l.donor, l.mib, l.id)
            .then([](bool) {}, [](caf::error&) {});
    });
    it = st.leases.erase(it);
  }
  return total;
}

void commit_reserved(self_ptr self, const TxnPtr& txn, const ReservedPtr& r) {
  act(txn, [self, r] {
    for (std::size_t i = 0; i < r->grants.size(); ++i)
      self->send(self->state.hosts[r->grants[i].donor], atom::commit::value, r->ids[i]);
  });
}

}  // namespace memlend::planner_parts
