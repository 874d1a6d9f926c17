// The controller's door in cluster mode: checks that a joining agent belongs
// to this cluster and speaks for a host of it, then binds it to that host's
// actor and hands it the world so it can rebuild its view of the platform.
#pragma once

#include "actors/actors.hpp"
#include "actors/data_plane.hpp"
#include "actors/policy/model.hpp"
#include "actors/sim_clock.hpp"

#include <caf/typed_event_based_actor.hpp>

namespace memlend {

struct RegistrarConfig {
  std::string cluster;
  std::string secret;
  std::vector<std::string> host_names;
  SimClock clock;
  std::shared_ptr<DataPlane> plane;  // learns where each host's data path listens
};

struct registrar_state {
  static constexpr const char* name = "registrar";
  RegistrarConfig config;
  supervisor_actor supervisor;
  planner_actor planner;
  driver_actor driver;
  sink_actor sink;
};

registrar_actor::behavior_type registrar(registrar_actor::stateful_pointer<registrar_state> self,
                                         RegistrarConfig config, supervisor_actor supervisor,
                                         planner_actor planner, driver_actor driver, sink_actor sink);

}  // namespace memlend
