// One actor per donor lease: it sets up the lease's data path (a grant at the
// donor, and where the recipient runs in this process, the remote region),
// keeps the lease's state (active, failed when the donor dies, released at
// the end), and comes back from its last state when it crashes. The region
// lives in the data plane, so a crash of this actor costs no byte.
#pragma once

#include "actors/actors.hpp"
#include "dataplane/data_plane.hpp"
#include "core/sim_clock.hpp"
#include "metrics/metrics.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <memory>

namespace memlend {

struct LeaseConfig {
  std::shared_ptr<DataPlane> plane;  // none: the data path is simulated
  bool local_recipient = true;       // the recipient's regions live in this process
  std::vector<std::string> host_names;
  std::vector<std::string> vm_names;
  SimClock clock;
  metrics::Registry* metrics = nullptr;  // data-path failures; none: not counted
};

struct lease_state {
  static constexpr const char* name = "lease";
  LeaseInfo info;
  LeaseConfig config;
  supervisor_actor supervisor;
  sink_actor sink;
  driver_actor driver;
  planner_actor planner;
};

lease_actor::behavior_type lease(lease_actor::stateful_pointer<lease_state> self, LeaseInfo info, LeaseConfig config,
                                 supervisor_actor supervisor, sink_actor sink, driver_actor driver,
                                 planner_actor planner);

}  // namespace memlend
