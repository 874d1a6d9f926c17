// One actor per VM: it reads the VM's telemetry, decides with hysteresis
// when the VM needs more (or can give memory back), asks the planner, and
// keeps the clock of the VM's remote use that leads to a recommendation.
#pragma once

#include "actors/actors.hpp"
#include "policy/detection.hpp"
#include "policy/model.hpp"
#include "core/sim_clock.hpp"

#include <caf/typed_event_based_actor.hpp>

namespace memlend {

struct VmConfig {
  std::string name;
  std::vector<std::string> host_names;
  policy::Settings settings;
  SimClock clock;
};

struct vm_actor_state {
  static constexpr const char* name = "vm";
  VmConfig config;
  VmCheckpoint cp;
  policy::Hysteresis need{1};
  policy::Hysteresis spare{1};
  bool busy = false;  // a question to the planner is under way
  // The demand a surplus was last offered back at (-1: none since it held).
  // An offer that freed no whole lease is made again once the demand moves,
  // not only when the surplus first holds: it may have held on a few MiB of
  // the host's own free memory, long before the guest let go of its leases.
  std::int64_t offered_at = -1;
  // The sample count at which a need the planner could not meet is asked
  // again though it has not changed (0: never). The cluster may have changed
  // since: a donor came up, a lease went back. Asked only when the need
  // changed, a steady need would wait for good.
  std::int64_t ask_again_at = 0;
  planner_actor planner;
  sink_actor sink;
  supervisor_actor supervisor;
};

vm_actor::behavior_type vm(vm_actor::stateful_pointer<vm_actor_state> self, VmConfig config, VmCheckpoint last,
                           planner_actor planner, sink_actor sink, supervisor_actor supervisor);

}  // namespace memlend
