#include "actors/planner_jobs.hpp"

#include "journal/journal.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <map>

namespace memlend::planner_parts {

using namespace memlend::policy;

namespace {

// The data path could not write a VM's mirror (a full or failing datastore):
// said at once and recorded, since from now on a donor's failure loses what
// it lent that VM. The region goes on with its donor.
void mirror_failed(self_ptr self, std::uint32_t from, const std::string& vm_name, const std::string& why,
                   JobDone done) {
  auto& st = self->state;
  auto vm = st.config.scenario.find_vm(vm_name);
  if (vm && from != own_data_path && st.view->vm(*vm).host != from) {
    note(self, "error: " + st.host_name(from) + " reported the mirror of " + vm_name + ", which runs on " +
                   st.host_name(st.view->vm(*vm).host) + "; ignored",
         {vm_name, st.host_name(from)});
    return done();
  }
  if (!vm || !st.mirror_mib.count(*vm) || st.mirror_failed.count(*vm)) return done();
  st.mirror_failed[*vm] = why;
  auto txn = begin(self);
  txn->batch.put(mirror_record(self, *vm, st.mirror_mib[*vm], store::MirrorState::failed));
  emit(self, txn, "mirror_failed", *vm, st.view->vm(*vm).host, std::nullopt, st.mirror_mib[*vm],
       "error: the mirror of " + vm_name + " cannot be written (" + why + "); if a donor of " + vm_name +
           " fails now, what it lent is lost");
  persist(self, txn, done);
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

void host_down(self_ptr self, std::uint32_t h, JobDone done) {
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
    for (const auto& [vm, mib] : lost) lent_to += (lent_to.empty() ? "" : ", ") + st.vm_name(vm) + " " + fmt_mib(mib);
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
                     ", which lent to it, is down",
           {st.vm_name(vm), st.host_name(st.view->vm(vm).host), st.host_name(h)});
    }
  std::vector<JobPlan> rehomes;
  for (const Lost& l : leases_lost) rehomes.push_back(rehome_job(self, l, h));
  persist(self, txn, [=] {
    enqueue_next(self, rehomes);
    done();
  });
}

void host_up(self_ptr self, std::uint32_t h, JobDone done) {
  auto& st = self->state;
  auto txn = begin(self);
  st.view->set_host_up(h, true);
  txn->batch.put(host_record(st.config.scenario.hosts[h], h, true));
  note(self, st.host_name(h) + " is up and may lend", {{}, st.host_name(h)});
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
    std::vector<JobPlan> rehomes;
    for (auto g = failed.rbegin(); g != failed.rend(); ++g)
      for (auto l = g->second.rbegin(); l != g->second.rend(); ++l) rehomes.push_back(rehome_job(self, *l, g->first));
    enqueue_next(self, rehomes);
    done();
  });
}

}  // namespace

JobPlan host_down_job(self_ptr self, std::uint32_t h) {
  return write_only([self, h](JobDone done) { host_down(self, h, std::move(done)); });
}

JobPlan host_up_job(self_ptr self, std::uint32_t h) {
  return write_only([self, h](JobDone done) { host_up(self, h, std::move(done)); });
}

JobPlan mirror_failed_job(self_ptr self, std::uint32_t from, std::string vm, std::string why) {
  return write_only([=](JobDone done) { mirror_failed(self, from, vm, why, std::move(done)); });
}

}  // namespace memlend::planner_parts
