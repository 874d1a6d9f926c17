#include "actors/planner_jobs.hpp"

#include "actors/defaults.hpp"
#include "journal/journal.hpp"

#include <caf/all.hpp>

namespace memlend::planner_parts {

using namespace memlend::policy;
using Answer = JobStep::Answer;

namespace {

void run_next(self_ptr self);

void finish(self_ptr self) {
  self->state.jobs.current.reset();
  run_next(self);
}

// The one way a job is undone: the steps before `failed`, last first.
void compensate(const Job& job, std::size_t failed) {
  while (failed > 0)
    if (const auto& undo = job.steps[--failed].compensate) undo();
}

void run_step(self_ptr self, std::shared_ptr<Job> job, std::size_t i) {
  if (i == job->steps.size()) {
    if (!job->commit) return finish(self);
    return job->commit([self] { finish(self); });
  }
  job->steps[i].run([self, job, i](Expected<void> result) {
    if (result) return run_step(self, job, i + 1);
    bool maybe_done = job->steps[i].silence_may_mean_done && result.error().code == ErrorCode::timed_out;
    if (!maybe_done) compensate(*job, i);
    if (job->abort) job->abort(result.error());
    finish(self);
  });
}

void run_next(self_ptr self) {
  auto& jobs = self->state.jobs;
  if (jobs.current || jobs.waiting.empty()) return;
  JobPlan plan = std::move(jobs.waiting.front());
  jobs.waiting.pop_front();
  jobs.current = std::make_shared<Job>(plan());
  run_step(self, jobs.current, 0);
}

// Phase one at each donor in turn. The ids are taken when the donors are
// asked, not when the job is planned: a migration its target refuses spends
// none.
void reserve_steps(self_ptr self, Job& job, const ReservedPtr& r) {
  JobStep number;
  number.run = [self, r](Answer answer) {
    for (std::size_t i = 0; i < r->grants.size(); ++i) r->ids.push_back(self->state.next_lease++);
    answer({});
  };
  job.steps.push_back(std::move(number));
  for (std::size_t i = 0; i < r->grants.size(); ++i) {
    JobStep reserve;
    reserve.run = [self, r, i](Answer answer) {
      const LeaseGrant& g = r->grants[i];
      self->request(self->state.hosts[g.donor], defaults::request_timeout, atom::reserve::value, r->ids[i], g.mib)
          .then(
              [=](bool ok) {
                if (ok) return answer({});
                auto& st = self->state;
                if (st.config.metrics) st.config.metrics->lease_failures(metrics::LeaseFailure::donor_refused).inc();
                note(self,
                     st.host_name(g.donor) + " refused to lend " + fmt_mib(g.mib) +
                         ": its own ledger has less free than the planner's view; the need will be decided again",
                     {{}, {}, st.host_name(g.donor), r->ids[i]});
                answer(Error{"a donor refused", ErrorCode::refused});
              },
              [=](caf::error&) { answer(Error{"a donor refused", ErrorCode::unavailable}); });
    };
    reserve.compensate = [self, r, i] {
      self->send(self->state.hosts[r->grants[i].donor], atom::cancel::value, r->ids[i]);
    };
    job.steps.push_back(std::move(reserve));
  }
}

ReservedPtr reserved(const std::vector<LeaseGrant>& grants) {
  auto r = std::make_shared<Reserved>();
  r->grants = grants;
  return r;
}

// Answers a need, and times its decision: its wait in the queue counts too.
struct Reply {
  self_ptr self;
  caf::typed_response_promise<NeedAnswer> rp;
  metrics::Histogram::Clock::time_point arrived;
  void operator()(NeedOutcome outcome) {
    rp.deliver(NeedAnswer{outcome});
    if (auto* m = self->state.config.metrics) m->decision_duration().observe_since(arrived);
  }
};

Job lend_job(self_ptr self, Decision d, Reply reply) {
  auto r = reserved(d.leases);
  Job job;
  reserve_steps(self, job, r);
  job.commit = [=](JobDone done) {
    auto& st = self->state;
    auto txn = begin(self);
    commit_reserved(self, txn, r);
    st.view->apply(d);
    note(self, st.vm_name(d.vm) + " on " + st.host_name(d.host) + ": " + d.reason,
         {st.vm_name(d.vm), st.host_name(d.host)});
    start_leases(self, txn, d.vm, *r, "lease_granted", d.reason);
    sync_mirror(self, txn, d.vm);
    txn->batch.put(vm_record(self, d.vm));
    persist(self, txn, [=]() mutable {
      reply(NeedOutcome::remote_memory);
      done();
    });
  };
  job.abort = [=](const Error&) mutable { reply(NeedOutcome::retry); };
  return job;
}

// What the target lent the VM is local to it now, so those leases end; the
// VM's other leases follow it to the target.
void record_migration(self_ptr self, const TxnPtr& txn, const Decision& d, HostId from, const ReservedPtr& r) {
  auto& st = self->state;
  std::int64_t folded = st.view->vm(d.vm).borrowed_from(d.target);
  act(txn, [self, d, folded] {
    self->send(self->state.hosts[d.target], atom::commit::value, atom::migrate::value, d.vm, folded);
  });
  commit_reserved(self, txn, r);
  end_leases(self, txn, d.vm, d.target, "lease_released", false);
  st.view->apply(d);
  note(self, st.vm_name(d.vm) + " on " + st.host_name(from) + ": " + d.reason, {st.vm_name(d.vm), st.host_name(from)});
  emit(self, txn, "vm_migrated", d.vm, d.target, std::nullopt, d.local_mib,
       st.vm_name(d.vm) + " migrated from " + st.host_name(from) + " to " + st.host_name(d.target) +
           " for its CPU; " + st.host_name(d.target) + " gives it " + fmt_mib(d.local_mib) + " of memory" +
           (d.leases.empty() ? std::string() : " and the rest is lent to it there"),
       d.reason);
  for (auto& [id, rec] : st.leases)
    if (rec.info.vm == d.vm) {
      rec.info.recipient = d.target;
      txn->batch.put(lease_record(rec.info));
      lease_actor actor = rec.actor;
      act(txn, [self, actor, d] {
        if (actor) self->send(actor, atom::moved::value, std::uint32_t{d.target});
      });
    }
  if (!r->grants.empty()) start_leases(self, txn, d.vm, *r, "lease_granted", d.reason);
  sync_mirror(self, txn, d.vm);
  txn->batch.put(vm_record(self, d.vm));
}

// Room at the target, memory at the donors, then the platform moves the VM.
Job migrate_job(self_ptr self, Decision d, Reply reply) {
  const VmState& vm = self->state.view->vm(d.vm);
  HostId from = vm.host;
  std::int64_t cpu = vm.demand_cpu;
  auto r = reserved(d.leases);
  Job job;
  JobStep room;
  room.run = [=](Answer answer) {
    self->request(self->state.hosts[d.target], defaults::request_timeout, atom::reservevm::value, d.vm, d.local_mib,
                  cpu)
        .then(
            [=](bool ok) {
              if (ok) return answer({});
              answer(Error{self->state.host_name(d.target) + " no longer has the room", ErrorCode::refused});
            },
            [=](caf::error&) {
              answer(Error{self->state.host_name(d.target) + " did not answer", ErrorCode::unavailable});
            });
  };
  room.compensate = [=] { self->send(self->state.hosts[d.target], atom::cancel::value, atom::migrate::value, d.vm); };
  job.steps.push_back(std::move(room));
  reserve_steps(self, job, r);
  JobStep move;
  // The platform moves the VM first: the record then says where it is.
  move.run = [=](Answer answer) {
    // Room at the target and the copy of the guest's memory, one after the other.
    self->request(self->state.driver, defaults::receive_timeout + defaults::migration_timeout, atom::migrate::value,
                  d.vm, d.target)
        .then(
            [=](bool moved) {
              if (moved) return answer({});
              if (auto* m = self->state.config.metrics)
                m->lease_failures(metrics::LeaseFailure::platform_refused).inc(static_cast<double>(r->ids.size()));
              answer(Error{"the platform refused the migration", ErrorCode::refused});
            },
            [=](caf::error&) { answer(Error{"the platform did not answer", ErrorCode::timed_out}); });
  };
  move.silence_may_mean_done = true;
  job.steps.push_back(std::move(move));
  job.commit = [=](JobDone done) {
    auto txn = begin(self);
    record_migration(self, txn, d, from, r);
    persist(self, txn, [=]() mutable {
      reply(NeedOutcome::migrate);
      done();
    });
  };
  job.abort = [=](const Error& e) mutable {
    auto& st = self->state;
    note(self,
         st.vm_name(d.vm) + " was not moved to " + st.host_name(d.target) + ": " + e.message +
             "; the need will be decided again",
         {st.vm_name(d.vm), st.host_name(d.host)});
    reply(NeedOutcome::retry);
  };
  return job;
}

Job unsatisfied_job(self_ptr self, Decision d, std::string why, Reply reply) {
  return write_job([=](JobDone done) mutable {
    auto& st = self->state;
    if (!st.news(d.vm, planner_state::Said::unhelped, why)) {
      reply(NeedOutcome::unsatisfied);
      return done();
    }
    auto txn = begin(self);
    emit(self, txn, "unsatisfied", d.vm, d.host, std::nullopt, d.extra_memory_mib,
         st.vm_name(d.vm) + " on " + st.host_name(d.host) + " cannot be helped: " + d.reason, d.reason);
    persist(self, txn, [=]() mutable {
      reply(NeedOutcome::unsatisfied);
      done();
    });
  });
}

NeedOutcome outcome_of(DecisionKind k) {
  switch (k) {
    case DecisionKind::none: return NeedOutcome::none;
    case DecisionKind::remote_memory: return NeedOutcome::remote_memory;
    case DecisionKind::migrate: return NeedOutcome::migrate;
    case DecisionKind::recommend_migration: return NeedOutcome::recommend_migration;
    case DecisionKind::unsatisfied: return NeedOutcome::unsatisfied;
  }
  return NeedOutcome::none;
}

}  // namespace

void enqueue(self_ptr self, JobPlan plan) {
  self->state.jobs.waiting.push_back(std::move(plan));
  run_next(self);
}

void enqueue_next(self_ptr self, std::vector<JobPlan> plans) {
  auto& waiting = self->state.jobs.waiting;
  waiting.insert(waiting.begin(), std::make_move_iterator(plans.begin()), std::make_move_iterator(plans.end()));
  run_next(self);
}

JobPlan need_job(self_ptr self, std::uint32_t vm, std::int64_t mem, std::int64_t cpu,
                 caf::typed_response_promise<NeedAnswer> rp) {
  Reply reply{self, rp, metrics::Histogram::Clock::now()};
  return [=]() mutable -> Job {
    auto& st = self->state;
    st.view->set_demand(vm, mem, cpu);
    Decision d = st.view->decide(vm);
    // The policy's reason, without the node's figures that change at each sample.
    std::string why = d.reason;
    if (d.kind != DecisionKind::unsatisfied) st.said.erase({vm, planner_state::Said::unhelped});
    // On a real node the figures come from an estimate: say what it rests on.
    if (auto it = st.demand_reasons.find(vm); it != st.demand_reasons.end())
      d.reason += " (" + st.host_name(d.host) + " read: " + it->second + ")";
    if (st.config.metrics) st.config.metrics->decisions(d.kind).inc();
    bool acts = d.kind == DecisionKind::remote_memory || d.kind == DecisionKind::migrate;
    if (acts && st.config.dry_run) {
      note(self,
           "(dry run) " + st.vm_name(vm) + " on " + st.host_name(d.host) + ": would " +
               std::string(to_string(d.kind)) + ": " + d.reason,
           {st.vm_name(vm), st.host_name(d.host)});
      return write_job([=](JobDone done) mutable {
        reply(NeedOutcome::dry_run);
        done();
      });
    }
    if (d.kind == DecisionKind::remote_memory) return lend_job(self, d, reply);
    if (d.kind == DecisionKind::migrate) return migrate_job(self, d, reply);
    if (d.kind == DecisionKind::unsatisfied) return unsatisfied_job(self, d, std::move(why), reply);
    return write_job([=](JobDone done) mutable {
      reply(outcome_of(d.kind));
      done();
    });
  };
}

JobPlan surplus_job(self_ptr self, std::uint32_t vm, std::int64_t mem, std::int64_t cpu,
                    caf::typed_response_promise<std::int64_t> rp) {
  return write_only([=](JobDone done) mutable {
    auto& st = self->state;
    st.view->set_demand(vm, mem, cpu);
    if (st.config.dry_run) {
      rp.deliver(std::int64_t{0});
      return done();
    }
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
      done();
    });
  });
}

JobPlan rehome_job(self_ptr self, Lost lost, HostId failed) {
  return [=]() -> Job {
    auto& st = self->state;
    if (!st.leases.count(lost.lease)) return {};
    DonorChoice c = st.view->rehome_choice(lost.vm, failed, lost.mib);
    if (c.leases.empty()) {
      note(self,
           st.vm_name(lost.vm) + " keeps reading " + fmt_mib(lost.mib) + " from its mirror: " + c.reason +
               "; memlend tries again when a host comes back",
           {st.vm_name(lost.vm), st.host_name(st.view->vm(lost.vm).host), st.host_name(failed), lost.lease});
      return {};
    }
    auto r = reserved(c.leases);
    Job job;
    reserve_steps(self, job, r);
    job.commit = [=](JobDone done) {
      auto& st = self->state;
      if (!st.leases.count(lost.lease)) return done();
      auto txn = begin(self);
      commit_reserved(self, txn, r);
      std::uint64_t epoch = st.leases[lost.lease].info.epoch + 1;
      end_leases(self, txn, lost.vm, failed, nullptr, true, lost.lease, true);
      st.view->rehome(lost.vm, failed, r->grants);
      start_leases(self, txn, lost.vm, *r, "lease_rehomed", c.reason, lost.lease, epoch);
      if (st.mirror_mib.count(lost.vm))
        txn->batch.put(mirror_record(self, lost.vm, st.mirror_mib[lost.vm], store::MirrorState::writing));
      persist(self, txn, done);
    };
    return job;
  };
}

}  // namespace memlend::planner_parts
