// One actor per host. It keeps the host's own ledger of what it lends and
// has the last word on a reservation: the planner decides from a view that
// may be a sample old, the host checks against its latest telemetry.
#pragma once

#include "actors/actors.hpp"
#include "policy/model.hpp"
#include "core/sim_clock.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <map>
#include <set>
#include <string>

namespace memlend {

// Cluster mode only: how long an agent may be silent before its host counts as down.
struct HostOptions {
  bool cluster = false;
  SimClock clock;
  double period_s = 10;
  int heartbeat_misses = 3;
};

struct host_actor_state {
  static constexpr const char* name = "host";
  policy::Host spec;
  HostCheckpoint ledger;
  HostOptions options;
  planner_actor planner;
  supervisor_actor supervisor;
  driver_actor driver;
  caf::actor agent;               // cluster mode: the agent that speaks for this host
  std::uint64_t incarnation = 0;  // of that agent's process
  std::uint64_t beat = 0;         // telemetry received, for the silence timer
  // VMs its agent names, by the controller's ids; those being admitted.
  std::map<std::string, std::uint32_t> vm_ids;
  std::set<std::string> admitting;

  std::int64_t lent() const;       // committed and pending loans
  std::int64_t arriving_mem() const;
  std::int64_t arriving_cpu() const;
  // What it may still lend: never its reserve, never its VMs' memory.
  std::int64_t lendable() const;
};

host_proxy_actor::behavior_type host(host_proxy_actor::stateful_pointer<host_actor_state> self, policy::Host spec,
                                     HostCheckpoint last, HostOptions options, planner_actor planner,
                                     supervisor_actor supervisor, driver_actor driver);

}  // namespace memlend
