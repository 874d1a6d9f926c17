// The pulse: proof, once a period, that the controller's actors still answer.
// It asks the supervisor for the planner and the planner for its view; only an
// answer through both calls `answered`, which feeds systemd's watchdog and
// /readyz. A timer thread would keep both happy while every actor was stuck;
// this way a wedged supervisor or planner goes silent and systemd restarts it.
#pragma once

#include "actors/actors.hpp"
#include "core/health.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <functional>

namespace memlend {

struct PulseConfig {
  supervisor_actor supervisor;  // the pulse stops with it
  caf::timespan period = std::chrono::seconds(1);
  bool cluster = false;
  // On the pulse's own thread, once per answer: keep it short.
  std::function<void(const PulseReading&)> answered;
};

struct pulse_state {
  static constexpr const char* name = "pulse";
  PulseConfig config;
};

pulse_actor::behavior_type pulse(pulse_actor::stateful_pointer<pulse_state> self, PulseConfig config);

// The planner's view, counted for a person and for /readyz.
PulseReading read_pulse(const PlannerView& view, bool cluster);

}  // namespace memlend
