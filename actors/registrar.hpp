// The controller's door in cluster mode: checks that a joining agent belongs
// to this cluster and speaks for a host of it, then binds it to that host's
// actor and hands it the world so it can rebuild its view of the platform.
#pragma once

#include "actors/actors.hpp"
#include "identity/cluster_auth.hpp"
#include "dataplane/data_plane.hpp"
#include "policy/model.hpp"
#include "core/sim_clock.hpp"

#include <caf/actor_clock.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <deque>

namespace memlend {

struct RegistrarConfig {
  std::string cluster;
  std::string secret;
  std::vector<std::string> host_names;
  SimClock clock;
  std::shared_ptr<DataPlane> plane;  // learns where each host's data path listens, and its pool secret
  std::shared_ptr<const ClusterCa> ca;  // checks each agent's certificate and proof of its key
  // No scenario: the cluster is who joins. An agent whose certificate names a
  // host not known yet is admitted as a new host with the facts it brings,
  // and a known host's facts follow its agent's.
  bool open = false;
  std::int64_t sample_period_s = 10;  // told to each agent that joins
  std::uint64_t epoch = 0;            // the leadership epoch, told to each agent that joins
};

struct registrar_state {
  static constexpr const char* name = "registrar";
  RegistrarConfig config;
  supervisor_actor supervisor;
  planner_actor planner;
  driver_actor driver;
  sink_actor sink;
  // Nonces handed out and not yet used, oldest first; each is good for one
  // join within defaults::join_nonce_ttl.
  std::deque<std::pair<std::string, caf::actor_clock::time_point>> nonces;
};

// Fills in the secrets of `leases` that lack one (the store keeps none, so
// after a restart they are derived again from the donors' pool secrets once
// their agents have joined).
void add_lease_secrets(std::vector<LeaseInfo>& leases, const DataPlane& plane,
                       const std::vector<std::string>& host_names);

registrar_actor::behavior_type registrar(registrar_actor::stateful_pointer<registrar_state> self,
                                         RegistrarConfig config, supervisor_actor supervisor,
                                         planner_actor planner, driver_actor driver, sink_actor sink);

}  // namespace memlend
