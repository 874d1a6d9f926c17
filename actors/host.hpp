// One actor per host. It keeps the host's own ledger of what it lends and
// has the last word on a reservation: the planner decides from a view that
// may be a sample old, the host checks against its latest telemetry.
#pragma once

#include "actors/actors.hpp"
#include "actors/policy/model.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <map>

namespace memlend {

struct host_state {
  static constexpr const char* name = "host";
  policy::Host spec;
  HostCheckpoint ledger;
  planner_actor planner;
  supervisor_actor supervisor;

  std::int64_t lent() const;       // committed and pending loans
  std::int64_t arriving_mem() const;
  std::int64_t arriving_cpu() const;
  // What it may still lend: never its reserve, never its VMs' memory.
  std::int64_t lendable() const;
};

host_actor::behavior_type host(host_actor::stateful_pointer<host_state> self, policy::Host spec,
                               HostCheckpoint last, planner_actor planner, supervisor_actor supervisor);

}  // namespace memlend
