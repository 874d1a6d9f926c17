// The supervisor: spawns every actor of the controller, keeps each child's
// latest state (its checkpoints), restarts a crashed child from that state
// with a growing backoff, tells the planner and the platform driver the new
// handle, and gives up (shutting the controller down with an error) when a
// child keeps crashing. The planner and the platform driver are not
// restarted on their own: the controller restarts as a whole and recovers
// from its store.
#pragma once

#include "identity/cluster_auth.hpp"
#include "actors/actors.hpp"
#include "dataplane/data_plane.hpp"
#include "actors/planner.hpp"
#include "core/sim_clock.hpp"
#include "firmware_hooks/platform.hpp"
#include "metrics/metrics.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <deque>
#include <map>
#include <memory>
#include <optional>

namespace memlend {

// Cluster mode: agents on the hosts join through a registrar.
struct ClusterConfig {
  bool enabled = false;
  std::string name;
  std::string secret;
  std::shared_ptr<const ClusterCa> ca;  // agents' certificates are checked against it
  int heartbeat_misses = 3;
  // No scenario: hosts are admitted as their agents join (RegistrarConfig::open).
  bool open = false;
};

struct SupervisorConfig {
  // The cluster as the actors start it (see PlannerConfig::scenario).
  policy::Scenario scenario;
  StartState start;
  std::shared_ptr<store::Store> store;
  std::string fingerprint;
  ClusterConfig cluster;
  double speed = 1;
  double origin_s = 0;
  std::optional<double> until_s;
  bool dry_run = false;
  std::string datastore;
  std::shared_ptr<platform::Platform> platform;
  std::shared_ptr<DataPlane> plane;  // none: the data path is simulated
  sink_actor sink;
  metrics::Registry* metrics = nullptr;  // restarts, and the planner's and leases' counts; none: not counted
};

struct supervisor_state {
  static constexpr const char* name = "supervisor";
  struct Child {
    caf::actor handle;
    caf::message last;  // its latest checkpoint
    std::deque<caf::actor_clock::time_point> restarts;
  };
  SupervisorConfig config;
  SimClock clock;
  std::map<std::pair<ChildKind, std::uint64_t>, Child> children;
  std::map<caf::actor_addr, std::pair<ChildKind, std::uint64_t>> by_addr;
  planner_actor planner;
  driver_actor driver;
  registrar_actor registrar;
  bool stopping = false;
  std::uint64_t restarts_total = 0;
};

supervisor_actor::behavior_type supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
                                           SupervisorConfig config);

}  // namespace memlend
