#include "actors/pulse.hpp"

#include <caf/all.hpp>

namespace memlend {

PulseReading read_pulse(const PlannerView& view, bool cluster) {
  PulseReading r;
  r.cluster = cluster;
  r.hosts = static_cast<int>(view.hosts.size());
  for (const auto& h : view.hosts) r.hosts_up += h.up ? 1 : 0;
  for (const auto& l : view.leases) r.leases_active += l.state == LeaseState::active ? 1 : 0;
  return r;
}

pulse_actor::behavior_type pulse(pulse_actor::stateful_pointer<pulse_state> self, PulseConfig config) {
  self->state.config = std::move(config);
  self->monitor(self->state.config.supervisor);
  self->set_down_handler([=](caf::down_msg&) { self->quit(); });
  self->send(self, atom::tick::value);
  return {
      [=](atom::tick) {
        const auto& c = self->state.config;
        // Each request waits one period at most: a late answer is no answer,
        // and the next tick asks again.
        self->request(c.supervisor, c.period, atom::get::value, ChildKind::planner, std::uint64_t{0})
            .then(
                [=](caf::actor a) {
                  auto planner = caf::actor_cast<planner_actor>(a);
                  if (!planner) return;
                  self->request(planner, self->state.config.period, atom::get::value)
                      .then([=](const PlannerView& view) {
                              const auto& cfg = self->state.config;
                              if (cfg.answered) cfg.answered(read_pulse(view, cfg.cluster));
                            },
                            [](caf::error&) {});
                },
                [](caf::error&) {});
        self->delayed_send(self, c.period, atom::tick::value);
      },
  };
}

}  // namespace memlend
