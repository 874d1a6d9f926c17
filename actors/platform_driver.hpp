// The platform driver: samples the platform backend on the scenario clock and
// hands the telemetry to host and VM actors; carries out the planner's
// actions on the platform. It owns the backend, so no other actor touches it.
#pragma once

#include "actors/actors.hpp"
#include "dataplane/data_plane.hpp"
#include "core/sim_clock.hpp"
#include "firmware_hooks/platform.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <memory>
#include <set>
#include <optional>

namespace memlend {

struct DriverConfig {
  // Cluster mode: agents sample their own hosts and carry out actions; the
  // driver routes their telemetry and tells every agent of every action.
  bool cluster = false;
  SimClock clock;
  double period_s = 10;
  std::optional<double> until_s;  // stop the run when scenario time reaches it
  // Cluster mode: derives the secrets of leases resumed from the store (which
  // keeps none) for the agents that are party to them.
  std::shared_ptr<DataPlane> plane;
  std::vector<std::string> host_names;
};

struct driver_state {
  static constexpr const char* name = "platform_driver";
  DriverConfig config;
  std::shared_ptr<platform::Platform> platform;
  std::vector<host_actor> hosts;
  std::vector<vm_actor> vms;
  std::vector<agent_actor> agents;
  // Cluster mode: each VM's host and leases, told to the agents concerned.
  std::vector<RemoteState> remote;
  supervisor_actor supervisor;
  sink_actor sink;
  planner_actor planner;
  bool stopped = false;
  // Cluster mode: VMs their host's agent, listing every VM it runs, lists no
  // more; and those of them another host's agent lists, being moved there.
  std::set<std::uint32_t> unlisted;
  std::set<std::uint32_t> moving;
};

// `start` is where each VM runs and what it borrows when the run begins.
driver_actor::behavior_type platform_driver(driver_actor::stateful_pointer<driver_state> self, DriverConfig config,
                                            std::shared_ptr<platform::Platform> platform, std::size_t hosts,
                                            std::vector<RemoteState> start, supervisor_actor supervisor,
                                            sink_actor sink, planner_actor planner);

}  // namespace memlend
