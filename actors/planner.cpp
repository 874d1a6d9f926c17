#include "actors/planner.hpp"

#include "actors/defaults.hpp"
#include "journal/journal.hpp"
#include "rdma/mirror.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>

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

namespace {

using self_ptr = planner_actor::stateful_pointer<planner_state>;
using Step = std::function<void(bool)>;

double now(self_ptr self) { return self->state.config.clock.now(self->clock()); }

// One step of the planner's work as the store sees it: the rows that change
// and the events that say so, written in one batch, and the actions that may
// be carried out only once that batch is durable.
struct Txn {
  store::Batch batch;
  std::vector<LogEvent> events;
  std::vector<std::function<void()>> acts;
  explicit Txn(double t) : batch(t) {}
};
using TxnPtr = std::shared_ptr<Txn>;

TxnPtr begin(self_ptr self) { return std::make_shared<Txn>(now(self)); }

void emit(self_ptr self, const TxnPtr& txn, std::string event, std::uint32_t vm, std::optional<std::uint32_t> host,
          std::optional<std::uint32_t> donor, std::int64_t mib, std::string text) {
  auto& st = self->state;
  LogEvent e;
  e.t_s = txn->batch.t_s();
  e.event = std::move(event);
  if (vm != ~0u) e.vm = st.vm_name(vm);
  if (host) e.host = st.host_name(*host);
  if (donor) e.donor = st.host_name(*donor);
  e.mib = mib;
  e.text = std::move(text);
  txn->batch.event(event_record(e));
  txn->events.push_back(std::move(e));
}

void act(const TxnPtr& txn, std::function<void()> f) { txn->acts.push_back(std::move(f)); }

// The store cannot take what the planner decided: acting anyway would leave
// the store behind the cluster, so the planner stops and the controller
// restarts from what is durable.
void give_up(self_ptr self, const std::string& why) {
  LogEvent e;
  e.t_s = now(self);
  e.text = "error: the store did not record a decision (" + why + "); stopping";
  self->send(self->state.sink, atom::event::value, std::move(e));
  self->quit(caf::make_error(caf::sec::runtime_error, "store: " + why));
}

// Writes the transaction; once durable, its events go out (in the store's
// order: the sink hears of them from the store's own thread) and its
// actions run, then `then`.
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

std::string mirror_path(self_ptr self, std::uint32_t vm);

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

// A console line that is not an event: reasons, refusals, things not done.
void note(self_ptr self, std::string text) {
  LogEvent e;
  e.t_s = now(self);
  e.text = std::move(text);
  self->send(self->state.sink, atom::event::value, std::move(e));
}

// Jobs run one at a time; each calls finish() when its last reply is in.
void enqueue(self_ptr self, std::function<void()> job) {
  self->state.jobs.push_back(std::move(job));
  if (self->state.busy) return;
  self->state.busy = true;
  auto next = std::move(self->state.jobs.front());
  self->state.jobs.pop_front();
  next();
}

void finish(self_ptr self) {
  auto& st = self->state;
  if (st.jobs.empty()) {
    st.busy = false;
    return;
  }
  auto next = std::move(st.jobs.front());
  st.jobs.pop_front();
  next();
}

// Phase one at each donor in turn; on a refusal, cancels what was reserved.
struct Reservation {
  std::vector<LeaseGrant> grants;
  std::vector<std::uint64_t> ids;
  std::size_t done = 0;
};

void reserve_leases(self_ptr self, std::shared_ptr<Reservation> r, Step k) {
  auto& st = self->state;
  if (r->done == r->grants.size()) return k(true);
  const LeaseGrant& g = r->grants[r->done];
  std::uint64_t id = r->ids[r->done];
  self->request(st.hosts[g.donor], defaults::request_timeout, atom::reserve::value, id, g.mib)
      .then(
          [=](bool ok) {
            if (ok) {
              ++r->done;
              return reserve_leases(self, r, k);
            }
            auto& st = self->state;
            if (st.config.metrics) st.config.metrics->lease_failures(metrics::LeaseFailure::donor_refused).inc();
            note(self, st.host_name(r->grants[r->done].donor) + " refused to lend " + fmt_mib(r->grants[r->done].mib) +
                           ": its own ledger has less free than the planner's view; the need will be decided again");
            for (std::size_t i = 0; i < r->done; ++i)
              self->send(st.hosts[r->grants[i].donor], atom::cancel::value, r->ids[i]);
            k(false);
          },
          [=](caf::error&) {
            auto& st = self->state;
            for (std::size_t i = 0; i < r->done; ++i)
              self->send(st.hosts[r->grants[i].donor], atom::cancel::value, r->ids[i]);
            k(false);
          });
}

std::shared_ptr<Reservation> new_reservation(self_ptr self, const std::vector<LeaseGrant>& grants) {
  auto r = std::make_shared<Reservation>();
  r->grants = grants;
  for (std::size_t i = 0; i < grants.size(); ++i) r->ids.push_back(self->state.next_lease++);
  return r;
}

std::string mirror_path(self_ptr self, std::uint32_t vm) {
  return rdma::mirror_path(self->state.config.datastore, self->state.vm_name(vm));
}

// The VM's mirror follows the total it borrows: made, grown, shrunk, deleted.
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

// Records granted leases and, once durable, starts their lease actors and
// attaches the memory.
void start_leases(self_ptr self, const TxnPtr& txn, std::uint32_t vm, const std::shared_ptr<Reservation>& r,
                  const char* event, const std::string& why, std::uint64_t replaces = 0, std::uint64_t epoch = 1) {
  auto& st = self->state;
  HostId recipient = st.view->vm(vm).host;
  std::int64_t per_lease_kib = buffer_kib_per_lease(st.config.scenario.settings);
  bool first = !st.remote_since.count(vm);
  if (first) st.remote_since[vm] = txn->batch.t_s();
  for (std::size_t i = 0; i < r->grants.size(); ++i) {
    const LeaseGrant& g = r->grants[i];
    LeaseInfo info;
    info.id = r->ids[i];
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
                                 " (lease " + std::to_string(info.id) + "), filled from its mirror" + why
                           : st.host_name(g.donor) + " lends " + st.vm_name(vm) + " " + fmt_mib(g.mib) + " over " +
                                 (g.transport == Transport::rdma ? "RDMA" : "TCP") + " (lease " +
                                 std::to_string(info.id) + "), with a local buffer of " +
                                 std::to_string(per_lease_kib) + " KiB on " + st.host_name(recipient);
    emit(self, txn, event, vm, recipient, g.donor, g.mib, std::move(text));
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

// Records the end of the VM's leases from `donor` (`event` names why, none
// for a failed lease that simply goes) and, once durable, releases them.
// `only`: that lease alone; `replaced`: a new lease takes its contents, so its
// region stays.
std::int64_t end_leases(self_ptr self, const TxnPtr& txn, std::uint32_t vm, HostId donor, const char* event,
                        bool detach, std::uint64_t only = 0, bool replaced = false) {
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
      emit(self, txn, event, vm, l.recipient, donor, l.mib, std::move(text));
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

void deliver_later(self_ptr self, caf::typed_response_promise<std::string> rp, std::string kind) {
  rp.deliver(std::move(kind));
  if (auto* m = self->state.config.metrics) m->decision_duration().observe_since(self->state.need_arrived);
  finish(self);
}

// Phase two at the donors, once the transaction is durable.
void commit_reservation(const TxnPtr& txn, self_ptr self, const std::shared_ptr<Reservation>& r) {
  act(txn, [self, r] {
    for (std::size_t i = 0; i < r->grants.size(); ++i)
      self->send(self->state.hosts[r->grants[i].donor], atom::commit::value, r->ids[i]);
  });
}

void execute_remote(self_ptr self, Decision d, caf::typed_response_promise<std::string> rp) {
  auto r = new_reservation(self, d.leases);
  reserve_leases(self, r, [=](bool ok) mutable {
    if (!ok) return deliver_later(self, rp, "retry");
    auto& st = self->state;
    auto txn = begin(self);
    commit_reservation(txn, self, r);
    st.view->apply(d);
    note(self, st.vm_name(d.vm) + " on " + st.host_name(d.host) + ": " + d.reason);
    start_leases(self, txn, d.vm, r, "lease_granted", "");
    sync_mirror(self, txn, d.vm);
    txn->batch.put(vm_record(self, d.vm));
    persist(self, txn, [=]() mutable { deliver_later(self, rp, "remote_memory"); });
  });
}

void execute_migrate(self_ptr self, Decision d, caf::typed_response_promise<std::string> rp) {
  auto& st = self->state;
  const VmState& vm = st.view->vm(d.vm);
  HostId from = vm.host;
  std::int64_t cpu = vm.demand_cpu;
  auto fail = [=](const std::string& why) mutable {
    note(self, self->state.vm_name(d.vm) + " was not moved to " + self->state.host_name(d.target) + ": " + why +
                   "; the need will be decided again");
    deliver_later(self, rp, "retry");
  };
  self->request(st.hosts[d.target], defaults::request_timeout, atom::reservevm::value, d.vm, d.local_mib, cpu)
      .then(
          [=](bool ok) mutable {
            if (!ok) return fail(self->state.host_name(d.target) + " no longer has the room");
            auto r = new_reservation(self, d.leases);
            reserve_leases(self, r, [=](bool ok) mutable {
              auto& st = self->state;
              if (!ok) {
                self->send(st.hosts[d.target], atom::cancel::value, atom::migrate::value, d.vm);
                return fail("a donor refused");
              }
              // The platform moves the VM first: the record then says where it is.
              self->request(st.driver, defaults::request_timeout, atom::migrate::value, d.vm, d.target)
                  .then(
                      [=](bool moved) mutable {
                        auto& st = self->state;
                        if (!moved) {
                          self->send(st.hosts[d.target], atom::cancel::value, atom::migrate::value, d.vm);
                          for (std::size_t i = 0; i < r->ids.size(); ++i)
                            self->send(st.hosts[r->grants[i].donor], atom::cancel::value, r->ids[i]);
                          if (st.config.metrics)
                            st.config.metrics->lease_failures(metrics::LeaseFailure::platform_refused)
                                .inc(static_cast<double>(r->ids.size()));
                          return fail("the platform refused the migration");
                        }
                        auto txn = begin(self);
                        std::int64_t folded = st.view->vm(d.vm).borrowed_from(d.target);
                        act(txn, [self, d, folded] {
                          self->send(self->state.hosts[d.target], atom::commit::value, atom::migrate::value, d.vm,
                                     folded);
                        });
                        commit_reservation(txn, self, r);
                        // What the target lent this VM is local to it now.
                        end_leases(self, txn, d.vm, d.target, "lease_released", false);
                        st.view->apply(d);
                        note(self, st.vm_name(d.vm) + " on " + st.host_name(from) + ": " + d.reason);
                        emit(self, txn, "vm_migrated", d.vm, d.target, std::nullopt, d.local_mib,
                             st.vm_name(d.vm) + " migrated from " + st.host_name(from) + " to " +
                                 st.host_name(d.target) + " for its CPU; " + st.host_name(d.target) + " gives it " +
                                 fmt_mib(d.local_mib) + " of memory" +
                                 (d.leases.empty() ? std::string() : " and the rest is lent to it there"));
                        for (auto& [id, rec] : st.leases)
                          if (rec.info.vm == d.vm) {
                            rec.info.recipient = d.target;
                            txn->batch.put(lease_record(rec.info));
                            lease_actor actor = rec.actor;
                            act(txn, [self, actor, d] {
                              if (actor) self->send(actor, atom::moved::value, std::uint32_t{d.target});
                            });
                          }
                        if (!r->grants.empty()) start_leases(self, txn, d.vm, r, "lease_granted", "");
                        sync_mirror(self, txn, d.vm);
                        txn->batch.put(vm_record(self, d.vm));
                        persist(self, txn, [=]() mutable { deliver_later(self, rp, "migrate"); });
                      },
                      [=](caf::error&) mutable { fail("the platform did not answer"); });
            });
          },
          [=](caf::error&) mutable { fail(self->state.host_name(d.target) + " did not answer"); });
}

// A failed lease, to move to a new donor.
struct Lost {
  std::uint32_t vm = 0;
  std::uint64_t lease = 0;
  std::int64_t mib = 0;
};

// Moves failed leases (donor `failed`) to new donors, one lease at a time;
// each new lease takes the old one's contents from the mirror.
void rehome(self_ptr self, std::vector<Lost> todo, HostId failed, std::function<void()> k) {
  if (todo.empty()) return k();
  Lost lost = todo.back();
  todo.pop_back();
  auto& st = self->state;
  if (!st.leases.count(lost.lease)) return rehome(self, std::move(todo), failed, k);
  DonorChoice c = st.view->rehome_choice(lost.vm, failed, lost.mib);
  if (c.leases.empty()) {
    note(self, st.vm_name(lost.vm) + " keeps reading " + fmt_mib(lost.mib) + " from its mirror: " + c.reason +
                   "; memlend tries again when a host comes back");
    return rehome(self, std::move(todo), failed, k);
  }
  auto r = new_reservation(self, c.leases);
  reserve_leases(self, r, [=](bool ok) {
    auto& st = self->state;
    if (!ok || !st.leases.count(lost.lease)) return rehome(self, todo, failed, k);
    auto txn = begin(self);
    commit_reservation(txn, self, r);
    std::uint64_t epoch = st.leases[lost.lease].info.epoch + 1;
    end_leases(self, txn, lost.vm, failed, nullptr, true, lost.lease, true);
    st.view->rehome(lost.vm, failed, r->grants);
    start_leases(self, txn, lost.vm, r, "lease_rehomed", " (" + c.reason + ")", lost.lease, epoch);
    if (st.mirror_mib.count(lost.vm))
      txn->batch.put(mirror_record(self, lost.vm, st.mirror_mib[lost.vm], store::MirrorState::writing));
    persist(self, txn, [=] { rehome(self, todo, failed, k); });
  });
}

// The data path could not write a VM's mirror (a full or failing datastore):
// said at once and recorded, since from now on a donor's failure loses what
// it lent that VM. The region goes on with its donor.
void mirror_failed(self_ptr self, std::uint32_t from, const std::string& vm_name, const std::string& why) {
  auto& st = self->state;
  auto vm = st.config.scenario.find_vm(vm_name);
  if (vm && from != own_data_path && st.view->vm(*vm).host != from) {
    note(self, "error: " + st.host_name(from) + " reported the mirror of " + vm_name + ", which runs on " +
                   st.host_name(st.view->vm(*vm).host) + "; ignored");
    return finish(self);
  }
  if (!vm || !st.mirror_mib.count(*vm) || st.mirror_failed.count(*vm)) return finish(self);
  st.mirror_failed[*vm] = why;
  auto txn = begin(self);
  txn->batch.put(mirror_record(self, *vm, st.mirror_mib[*vm], store::MirrorState::failed));
  emit(self, txn, "mirror_failed", *vm, st.view->vm(*vm).host, std::nullopt, st.mirror_mib[*vm],
       "error: the mirror of " + vm_name + " cannot be written (" + why + "); if a donor of " + vm_name +
           " fails now, what it lent is lost");
  persist(self, txn, [=] { finish(self); });
}

// Donor h is down and vm's mirror was failed: what h lent it is gone. Said
// once; the leases end (their regions are detached) and the VM is judged
// again on what it has.
void memory_lost(self_ptr self, const TxnPtr& txn, std::uint32_t vm, HostId h, std::int64_t mib) {
  auto& st = self->state;
  emit(self, txn, "memory_lost", vm, st.view->vm(vm).host, h, mib,
       st.vm_name(vm) + "'s " + fmt_mib(mib) + " lent by " + st.host_name(h) + " is lost: " + st.host_name(h) +
           " is down and the mirror could not be written (" + st.mirror_failed[vm] + ")");
  end_leases(self, txn, vm, h, nullptr, true);
  st.view->release(vm, h);
  sync_mirror(self, txn, vm);
  txn->batch.put(vm_record(self, vm));
}

void host_down(self_ptr self, std::uint32_t h) {
  auto& st = self->state;
  auto txn = begin(self);
  st.view->set_host_up(h, false);
  txn->batch.put(host_record(st.config.scenario.hosts[h], h, false));
  // A simulated host's memory goes with it, as a real one's would.
  if (auto plane = st.config.plane) {
    std::string name = st.host_name(h);
    act(txn, [plane, name] { plane->post([plane, name] { plane->stop_serving(name); }); });
  }
  // As a donor: every VM it lent to reads that part from its mirror, then
  // the part moves to a new donor, filled from the mirror. A VM whose mirror
  // could not be written has lost that part instead: no failover claims a
  // mirror that is not there.
  std::vector<std::pair<std::uint32_t, std::int64_t>> lost;  // by VM, for the events
  std::vector<Lost> leases_lost;
  for (auto& [id, rec] : st.leases) {
    if (rec.info.donor != h || rec.info.state != LeaseState::active) continue;
    if (st.config.metrics) st.config.metrics->lease_failures(metrics::LeaseFailure::donor_down).inc();
    lease_actor actor = rec.actor;
    act(txn, [self, actor] {
      if (actor) self->send(actor, atom::failover::value);
    });
    auto it = std::find_if(lost.begin(), lost.end(), [&](const auto& p) { return p.first == rec.info.vm; });
    if (it == lost.end())
      lost.emplace_back(rec.info.vm, rec.info.mib);
    else
      it->second += rec.info.mib;
    if (st.mirror_failed.count(rec.info.vm)) continue;  // ended below, not re-homed
    rec.info.state = LeaseState::failed;
    txn->batch.put(lease_record(rec.info));
    leases_lost.push_back({rec.info.vm, id, rec.info.mib});
  }
  if (!lost.empty()) {
    std::string lent_to;
    for (const auto& [vm, mib] : lost)
      lent_to += (lent_to.empty() ? "" : ", ") + st.vm_name(vm) + " " + fmt_mib(mib);
    emit(self, txn, "donor_failed", ~0u, h, std::nullopt, -1, st.host_name(h) + " is down; it lent " + lent_to);
    for (const auto& [vm, mib] : lost) {
      if (st.mirror_failed.count(vm)) {
        memory_lost(self, txn, vm, h, mib);
        continue;
      }
      if (st.mirror_mib.count(vm))
        txn->batch.put(mirror_record(self, vm, st.mirror_mib[vm], store::MirrorState::serving));
      mirror_actor writer = st.mirrors.count(vm) ? st.mirrors[vm] : mirror_actor{};
      act(txn, [self, writer, h] {
        if (writer) self->send(writer, atom::failover::value, h);
      });
      emit(self, txn, "failover_to_mirror", vm, st.view->vm(vm).host, h, mib,
           st.vm_name(vm) + " reads the " + fmt_mib(mib) + " " + st.host_name(h) + " lent it from its mirror");
    }
  }
  // As a recipient: its VMs' donors reclaim what they lent, mirrors go.
  for (std::uint32_t v = 0; v < st.view->vm_count(); ++v) {
    if (st.view->vm(v).host != h || st.view->vm(v).borrowed.empty()) continue;
    std::vector<RemotePart> parts = st.view->vm(v).borrowed;
    for (const auto& p : parts) {
      bool donor_up = st.view->host_state(p.donor).up;
      end_leases(self, txn, v, p.donor, donor_up ? "memory_reclaimed" : nullptr, true);
      st.view->release(v, p.donor);
    }
    sync_mirror(self, txn, v);
    txn->batch.put(vm_record(self, v));
  }
  // A recommendation to move a VM to its main donor is moot once a donor of
  // it is down: withdrawn, and the VM is judged again on what it borrows now.
  for (const auto& [vm, mib] : lost)
    if (st.recommended.erase(vm)) {
      txn->batch.drop_recommendation(vm);
      note(self, "the recommendation to migrate " + st.vm_name(vm) + " is withdrawn: " + st.host_name(h) +
                     ", which lent to it, is down");
    }
  std::reverse(leases_lost.begin(), leases_lost.end());
  persist(self, txn, [=] { rehome(self, leases_lost, h, [=] { finish(self); }); });
}

using FailedParts = std::vector<std::pair<HostId, std::vector<Lost>>>;

// Re-homes failed leases one former donor at a time, then ends the job.
void rehome_failed(self_ptr self, FailedParts groups) {
  if (groups.empty()) return finish(self);
  auto [donor, todo] = std::move(groups.back());
  groups.pop_back();
  rehome(self, std::move(todo), donor, [=] { rehome_failed(self, groups); });
}

void host_up(self_ptr self, std::uint32_t h) {
  auto& st = self->state;
  auto txn = begin(self);
  st.view->set_host_up(h, true);
  txn->batch.put(host_record(st.config.scenario.hosts[h], h, true));
  note(self, st.host_name(h) + " is up and may lend");
  if (auto plane = st.config.plane) {
    std::string name = st.host_name(h);
    std::int64_t mib = st.config.scenario.hosts[h].memory_mib;
    act(txn, [plane, name, mib] {
      plane->post([plane, name, mib] {
        if (plane->address(name).empty()) plane->serve(name, mib, "127.0.0.1:0");
      });
    });
  }
  // Fencing: a donor that comes back keeps only the leases still its own;
  // what was re-homed while it was away, it drops.
  std::vector<std::uint64_t> keep;
  for (const auto& [id, rec] : st.leases)
    if (rec.info.donor == h && rec.info.state == LeaseState::active) keep.push_back(id);
  act(txn, [self, h, keep] { self->send(self->state.hosts[h], atom::fence::value, keep); });
  persist(self, txn, [=] {
    // Memory that a dead donor lent and nobody could take is re-homed now.
    std::map<HostId, std::vector<Lost>> failed;
    for (auto& [id, rec] : self->state.leases)
      if (rec.info.state == LeaseState::failed) failed[rec.info.donor].push_back({rec.info.vm, id, rec.info.mib});
    rehome_failed(self, FailedParts(failed.begin(), failed.end()));
  });
}

void release_surplus(self_ptr self, std::uint32_t vm, caf::typed_response_promise<std::int64_t> rp) {
  auto& st = self->state;
  auto txn = begin(self);
  std::int64_t released = 0;
  for (const auto& p : st.view->surplus(vm)) {
    released += end_leases(self, txn, vm, p.donor, "lease_released", true);
    st.view->release(vm, p.donor);
  }
  sync_mirror(self, txn, vm);
  if (released > 0) txn->batch.put(vm_record(self, vm));
  persist(self, txn, [=]() mutable {
    rp.deliver(released);
    finish(self);
  });
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
        auto rp = self->make_response_promise<std::string>();
        auto arrived = metrics::Histogram::Clock::now();  // its wait in the queue counts too
        enqueue(self, [=]() mutable {
          auto& st = self->state;
          st.need_arrived = arrived;
          st.view->set_demand(vm, mem, cpu);
          Decision d = st.view->decide(vm);
          if (st.config.metrics) st.config.metrics->decisions(d.kind).inc();
          switch (d.kind) {
            case DecisionKind::remote_memory:
            case DecisionKind::migrate:
              if (st.config.dry_run) {
                note(self, "(dry run) " + st.vm_name(vm) + " on " + st.host_name(d.host) + ": would " +
                               std::string(to_string(d.kind)) + ": " + d.reason);
                return deliver_later(self, rp, "dry_run");
              }
              if (d.kind == DecisionKind::remote_memory) return execute_remote(self, d, rp);
              return execute_migrate(self, d, rp);
            case DecisionKind::unsatisfied: {
              auto txn = begin(self);
              emit(self, txn, "unsatisfied", vm, d.host, std::nullopt, d.extra_memory_mib,
                   st.vm_name(vm) + " on " + st.host_name(d.host) + " cannot be helped: " + d.reason);
              return persist(self, txn, [=]() mutable { deliver_later(self, rp, "unsatisfied"); });
            }
            default:
              return deliver_later(self, rp, std::string(to_string(d.kind)));
          }
        });
        return rp;
      },
      [=](atom::surplus, std::uint32_t vm, std::int64_t mem, std::int64_t cpu) {
        auto rp = self->make_response_promise<std::int64_t>();
        enqueue(self, [=]() mutable {
          self->state.view->set_demand(vm, mem, cpu);
          if (self->state.config.dry_run) {
            rp.deliver(std::int64_t{0});
            return finish(self);
          }
          release_surplus(self, vm, rp);
        });
        return rp;
      },
      [=](atom::recommend, std::uint32_t vm, std::int64_t remote_for) -> caf::result<bool> {
        auto& st = self->state;
        st.view->set_remote_for(vm, remote_for);
        Recommendation r = st.view->recommendation(vm);
        if (!r.ok) {
          std::string key = r.blocker + "@" + st.host_name(r.target);
          if (st.said[vm] != key)
            note(self, st.vm_name(vm) + " stays on " + st.host_name(st.view->vm(vm).host) + ": " + r.reason);
          st.said[vm] = key;
          return false;
        }
        st.said.erase(vm);
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
             "recommend migrating " + st.vm_name(vm) + " to " + st.host_name(r.target) + ": " + r.reason);
        auto rp = self->make_response_promise<bool>();
        persist(self, txn, [=]() mutable { rp.deliver(true); });
        return rp;
      },
      [=](atom::commit, std::uint64_t token, bool ok, const std::string& error) {
        auto& st = self->state;
        auto it = st.pending.find(token);
        if (it == st.pending.end()) return;
        auto then = std::move(it->second);
        st.pending.erase(it);
        if (!ok) return give_up(self, error);
        then();
      },
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
      [=](atom::sample, const std::vector<platform::VmSample>& samples) {
        enqueue(self, [=] {
          for (const auto& s : samples)
            self->state.view->observe(s.vm, s.host, s.demand_mem, s.demand_cpu, s.local_mem, s.local_cpu);
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
              std::string key = std::to_string(hs.up) + "/" + std::to_string(hs.used_mem) + "/" +
                                std::to_string(hs.used_cpu);
              if (st.written_host[h] == key) continue;
              st.written_host[h] = key;
              store::HostRecord r = host_record(st.config.scenario.hosts[h], h, hs.up);
              r.used_mib = hs.used_mem;
              r.used_mhz = hs.used_cpu;
              txn->batch.put(r);
            }
            return persist(self, txn, [=] { finish(self); });
          }
          finish(self);
        });
      },
      [=](atom::hostdown, std::uint32_t h) { enqueue(self, [=] { host_down(self, h); }); },
      [=](atom::hostup, std::uint32_t h) { enqueue(self, [=] { host_up(self, h); }); },
      [=](atom::mirrorfail, std::uint32_t from, const std::string& vm, const std::string& why) {
        enqueue(self, [=] { mirror_failed(self, from, vm, why); });
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
      [=](atom::join) {
        auto& st = self->state;
        std::vector<LeaseInfo> leases;
        for (const auto& [id, rec] : st.leases)
          if (rec.info.state == LeaseState::active) leases.push_back(rec.info);
        std::vector<Placement> moved;
        for (VmId v = 0; v < st.view->vm_count(); ++v)
          if (v < st.config.start.first_hosts.size() && st.view->vm(v).host != st.config.start.first_hosts[v])
            moved.push_back({v, st.view->vm(v).host});
        return std::make_tuple(std::move(leases), std::move(moved));
      },
      [=](atom::get) {
        auto& st = self->state;
        nlohmann::ordered_json j;
        j["t_s"] = now(self);
        for (HostId h = 0; h < st.config.scenario.hosts.size(); ++h) {
          const HostState& hs = st.view->host_state(h);
          j["hosts"].push_back({{"name", st.host_name(h)}, {"up", hs.up}, {"used_mib", hs.used_mem},
                                {"lent_mib", hs.lent}, {"lendable_mib", st.view->lendable(h)},
                                {"used_cpu_mhz", hs.used_cpu}});
        }
        for (VmId v = 0; v < st.view->vm_count(); ++v) {
          const VmState& vs = st.view->vm(v);
          j["vms"].push_back({{"name", st.vm_name(v)}, {"host", st.host_name(vs.host)},
                              {"demand_mib", vs.demand_mem}, {"local_mib", vs.share_mem},
                              {"borrowed_mib", vs.borrowed_mib()}, {"demand_cpu_mhz", vs.demand_cpu},
                              {"local_cpu_mhz", vs.share_cpu}});
        }
        j["leases"] = nlohmann::ordered_json::array();
        for (const auto& [id, rec] : st.leases)
          j["leases"].push_back({{"id", id}, {"vm", st.vm_name(rec.info.vm)}, {"donor", st.host_name(rec.info.donor)},
                                 {"recipient", st.host_name(rec.info.recipient)}, {"mib", rec.info.mib},
                                 {"state", rec.info.state}});
        j["mirrors"] = nlohmann::ordered_json::array();
        for (const auto& [vm, mib] : st.mirror_mib)
          j["mirrors"].push_back({{"vm", st.vm_name(vm)}, {"mib", mib}, {"path", mirror_path(self, vm)}});
        return j.dump();
      },
  };
}

}  // namespace memlend
