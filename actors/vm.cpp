#include "actors/vm.hpp"

#include "actors/defaults.hpp"
#include "core/failpoint.hpp"
#include "policy/cluster.hpp"

#include <caf/all.hpp>

#include <tuple>

namespace memlend {

using policy::fmt_mhz;
using policy::fmt_mib;
using policy::Hysteresis;

namespace {

using self_ptr = vm_actor::stateful_pointer<vm_actor_state>;

double now(self_ptr self) { return self->state.config.clock.now(self->clock()); }

void save(self_ptr self) {
  auto& st = self->state;
  st.cp.need_active = st.need.active();
  st.cp.need_streak = st.need.streak();
  st.cp.surplus_active = st.spare.active();
  st.cp.surplus_streak = st.spare.streak();
  self->send(st.supervisor, atom::checkpoint::value, ChildKind::vm, std::uint64_t{st.cp.vm},
             caf::make_message(st.cp));
}

// Arms the timer that fires when the VM has used remote memory for migrate_after_s.
void arm_reminder(self_ptr self) {
  auto& st = self->state;
  double due = st.cp.remote_since + static_cast<double>(st.config.settings.migrate_after_s);
  self->delayed_send(self, st.config.clock.after(due - now(self)), atom::remind::value, st.cp.generation);
}

void start_remote_clock(self_ptr self, double since) {
  auto& st = self->state;
  if (st.cp.has_remote) return;
  st.cp.has_remote = true;
  st.cp.remote_since = since;
  st.cp.recommended = false;
  ++st.cp.generation;
  arm_reminder(self);
  save(self);
}

void ask_recommendation(self_ptr self) {
  auto& st = self->state;
  if (st.busy || !st.cp.has_remote || st.cp.recommended) return;
  st.busy = true;
  auto used = static_cast<std::int64_t>(now(self) - st.cp.remote_since + 1e-6);
  self->request(st.planner, defaults::request_timeout, atom::recommend::value, st.cp.vm, used)
      .then(
          [=](bool recommended) {
            self->state.busy = false;
            if (recommended) {
              self->state.cp.recommended = true;
              save(self);
            }
          },
          [=](caf::error&) { self->state.busy = false; });
}

void ask_for_more(self_ptr self, const platform::VmSample& s, std::int64_t extra_mem, std::int64_t extra_cpu) {
  auto& st = self->state;
  st.busy = true;
  st.cp.asked_mem = extra_mem;
  st.cp.asked_cpu = extra_cpu;
  save(self);
  self->request(st.planner, defaults::request_timeout, atom::need::value, st.cp.vm, s.demand_mem, s.demand_cpu)
      .then(
          [=](const NeedAnswer& answer) {
            auto& st = self->state;
            st.busy = false;
            if (answer.satisfied()) {
              st.need.restore(false, 0);
              st.cp.asked_mem = st.cp.asked_cpu = -1;
              save(self);
            } else if (answer.outcome == NeedOutcome::retry) {
              st.cp.asked_mem = st.cp.asked_cpu = -1;
            } else if (answer.outcome == NeedOutcome::unsatisfied) {
              st.ask_again_at = st.cp.samples + std::max<std::int64_t>(1, st.config.settings.detect_samples);
            }
          },
          [=](caf::error&) {
            self->state.busy = false;
            self->state.cp.asked_mem = self->state.cp.asked_cpu = -1;
          });
}

void offer_back(self_ptr self, const platform::VmSample& s) {
  auto& st = self->state;
  st.busy = true;
  self->request(st.planner, defaults::request_timeout, atom::surplus::value, st.cp.vm, s.demand_mem, s.demand_cpu)
      .then(
          [=](std::int64_t released) {
            self->state.busy = false;
            if (released > 0) {
              self->state.offered_at = -1;
              self->state.spare.restore(false, 0);
              save(self);
            }
          },
          [=](caf::error&) {
            self->state.busy = false;
            self->state.offered_at = -1;
          });
}

}  // namespace

vm_actor::behavior_type vm(vm_actor::stateful_pointer<vm_actor_state> self, VmConfig config, VmCheckpoint last,
                           planner_actor planner, sink_actor sink, supervisor_actor supervisor) {
  auto& st = self->state;
  st.config = std::move(config);
  st.cp = std::move(last);
  st.planner = planner;
  st.sink = sink;
  st.supervisor = supervisor;
  st.need = Hysteresis(st.config.settings.detect_samples);
  st.need.restore(st.cp.need_active, st.cp.need_streak);
  st.spare = Hysteresis(st.config.settings.detect_samples);
  st.spare.restore(st.cp.surplus_active, st.cp.surplus_streak);
  if (st.cp.has_remote && !st.cp.recommended) arm_reminder(self);
  return {
      [=](atom::sample, const platform::VmSample& s) {
        auto& st = self->state;
        if (failpoint::fires("vm.sample"))
          return self->quit(caf::make_error(caf::sec::runtime_error, "failpoint vm.sample"));
        ++st.cp.samples;
        st.cp.host = s.host;
        // A VM whose host is down is the HA service's to restart, not ours.
        if (!s.host_up) return;
        double t = now(self);
        auto streaks = std::make_tuple(st.need.active(), st.need.streak(), st.spare.active(), st.spare.streak());
        std::int64_t extra_mem = std::max<std::int64_t>(0, s.demand_mem - s.local_mem - s.remote_mem);
        std::int64_t extra_cpu = std::max<std::int64_t>(0, s.demand_cpu - s.local_cpu);
        bool needy = extra_mem > 0 || extra_cpu > 0;
        auto change = st.need.sample(needy);
        if (change == Hysteresis::Change::raised) {
          LogEvent e;
          e.t_s = t;
          e.event = "need_detected";
          e.vm = st.config.name;
          e.host = st.config.host_names[s.host];
          e.mib = extra_mem;
          e.text = st.config.name + " on " + e.host + " needs " +
                   (extra_mem > 0 ? fmt_mib(extra_mem) + " more memory" : std::string("no more memory")) +
                   (extra_cpu > 0 ? " and " + fmt_mhz(extra_cpu) + " more CPU" : std::string(" and no more CPU")) +
                   " (" + std::to_string(st.config.settings.detect_samples) + " samples in a row)";
          self->send(st.sink, atom::event::value, std::move(e));
        }
        if (change == Hysteresis::Change::cleared) st.cp.asked_mem = st.cp.asked_cpu = -1;

        // Memory it could give back: what its host has free now counts. Offered
        // before any question of more, which a VM short of CPU asks at nearly
        // every sample: asked first, it would keep the offer waiting for good.
        bool can_give = s.remote_mem > 0 && s.local_mem + s.host_free_mem + s.remote_mem > s.demand_mem;
        st.spare.sample(can_give);
        if (!st.spare.active() || !can_give) st.offered_at = -1;
        if (!st.busy && st.spare.active() && can_give && s.demand_mem != st.offered_at) {
          st.offered_at = s.demand_mem;
          offer_back(self, s);
        }
        bool ask_again = st.ask_again_at != 0 && st.cp.samples >= st.ask_again_at;
        if (!st.busy && st.need.active() && needy &&
            (ask_again || extra_mem != st.cp.asked_mem || extra_cpu != st.cp.asked_cpu)) {
          st.ask_again_at = 0;
          ask_for_more(self, s, extra_mem, extra_cpu);
        }

        if (s.remote_mem > 0) {
          start_remote_clock(self, t);
        } else if (st.cp.has_remote) {
          st.cp.has_remote = false;
          st.cp.recommended = false;
          ++st.cp.generation;
          save(self);
        }
        // A restarted actor must not lose a streak half-way through.
        if (streaks != std::make_tuple(st.need.active(), st.need.streak(), st.spare.active(), st.spare.streak()))
          save(self);
        // Past the threshold a refused recommendation is asked again on each
        // sample: the donor may have made room since.
        if (st.cp.has_remote && !st.cp.recommended &&
            t - st.cp.remote_since >= static_cast<double>(st.config.settings.migrate_after_s))
          ask_recommendation(self);
      },
      [=](atom::granted, double since) { start_remote_clock(self, since); },
      [=](atom::admit, std::uint32_t h, const std::string& name) {
        auto& names = self->state.config.host_names;
        if (h == names.size()) names.push_back(name);
      },
      [=](atom::remind, std::uint64_t generation) {
        if (generation == self->state.cp.generation) ask_recommendation(self);
      },
      [=](atom::get) {
        auto& st = self->state;
        VmCheckpoint cp = st.cp;
        cp.need_active = st.need.active();
        cp.need_streak = st.need.streak();
        cp.surplus_active = st.spare.active();
        cp.surplus_streak = st.spare.streak();
        return cp;
      },
  };
}

}  // namespace memlend
