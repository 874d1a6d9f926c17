// The agent: memlend's side on one host of a cluster. It connects to the
// controller (never blocking: a failed attempt is retried by a delayed
// message), joins, samples its host every period and sends the telemetry to
// its host actor at the controller, which takes it as the heartbeat. Each
// agent keeps the whole platform's state (every action reaches every agent),
// reports only its own host, and rebuilds that state from the controller's
// world whenever it (re)joins. It learns only the leases it is party to.
#pragma once

#include "actors/actors.hpp"
#include "identity/cluster_auth.hpp"
#include "dataplane/data_plane.hpp"
#include "demo/guest_workload.hpp"
#include "core/sim_clock.hpp"
#include "firmware_hooks/node_sampler.hpp"
#include "firmware_hooks/platform.hpp"

#include <caf/actor.hpp>
#include <caf/node_id.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <vector>

namespace memlend {

// Optional hooks for benchmarks that host many agents in one process.
struct AgentProbe {
  std::function<void(const std::string& host)> joined;
  // A sample of one of its VMs was sent; `short_mib` is what the VM lacks.
  std::function<void(std::uint32_t vm, std::int64_t short_mib)> sampled;
  // As a donor it learned of a lease it now serves.
  std::function<void(std::uint64_t lease, std::uint32_t vm)> lending;
};

struct AgentConfig {
  std::string cluster;
  std::string secret;
  std::string host;
  std::string data_addr;
  // Where a controller may answer, HOST and port: tried in turn, from the
  // last that answered, so that an agent finds the cluster's controller
  // wherever it runs now.
  std::vector<std::pair<std::string, std::uint16_t>> controllers;
  // Who answers at an address of `controllers`: unset, CAF's middleman over
  // TLS. The actor tests set it to the registrars of controllers in their own
  // process, so that the whole join runs on CAF's test coordinator.
  std::function<caf::actor(const std::string& host, std::uint16_t port)> reach;
  policy::Scenario scenario;
  std::uint64_t incarnation = 0;
  // Its certificate and key: the proof, at each join, that it is `host`.
  std::shared_ptr<const NodeIdentity> identity;
  bool console = true;
  std::shared_ptr<AgentProbe> probe;
  // Its host's memory, served on data_addr, and its VMs' remote regions.
  std::shared_ptr<DataPlane> plane;
  std::shared_ptr<const demo::GuestWorkload> guest;  // what checks its VMs' remote memory
  // A real node: its host's facts and VMs come from its platform, not from
  // `scenario` (whose settings still give the sampling period), and lent
  // memory is plugged into its VMs through the platform, except for the VMs
  // whose memory `plane` serves itself (plane_plugs), which it plugs.
  std::shared_ptr<platform::NodeSampler> node;
  std::set<std::string> plane_plugs;
};

struct agent_state {
  static constexpr const char* name = "agent";
  AgentConfig config;
  std::unique_ptr<platform::Platform> platform;
  policy::HostId host = 0;
  SimClock clock;
  bool joined = false;
  registrar_actor registrar;
  host_proxy_actor home;        // its host actor at the controller
  std::uint64_t generation = 0;  // of the tick chain; a rejoin starts a new one
  int attempts = 0;       // rounds of config.controllers that found none
  std::size_t which = 0;  // of config.controllers: the one tried next
  std::size_t missed_in_round = 0;    // addresses that failed since the last round began
  std::set<std::size_t> said_missing;  // addresses said unreachable in this outage
  std::set<std::uint64_t> held;  // leases it lends
  std::map<std::uint32_t, std::set<std::uint64_t>> held_for;  // the same, by VM
  std::map<std::uint64_t, std::uint64_t> pool_id;             // lease → its id in this host's pool
  // The controller process it joined last, and the pool's grants when it lost
  // that controller: a controller killed between a grant and its record leaves
  // a grant that nobody will release, which the next join frees.
  caf::node_id controller;
  std::vector<std::uint64_t> grants_at_loss;
  // The highest leadership epoch of a controller it joined: one below it is
  // a deposed leader (cut off from the store's quorum, or not yet told), and
  // is refused.
  std::uint64_t epoch = 0;
  std::map<std::uint32_t, std::uint64_t> guest_passes;  // its guest workload's rounds said so far, by VM
  // A real node: what it joins with (from its last reading), the last
  // reading's failure (said once), and the leases plugged into each VM
  // through the platform, by VM name.
  std::optional<HostFacts> facts;
  std::string unreadable;
  // The actor that reads a real node, on a thread of its own, and whether a
  // reading is under way.
  caf::actor reader;
  bool reading = false;
  std::map<std::string, std::map<std::uint64_t, platform::LentMemory>> plugged;
};

// Of the grants this host's pool held when it lost its controller, those that
// the new controller's world does not name (`recorded`: the pool ids of the
// leases it says this host lends). Grants made after the loss are never among
// them: they may be the new controller's, not recorded yet.
std::vector<std::uint64_t> unrecorded_grants(const std::vector<std::uint64_t>& grants_at_loss,
                                             const std::set<std::uint64_t>& recorded);

agent_actor::behavior_type agent(agent_actor::stateful_pointer<agent_state> self, AgentConfig config);

}  // namespace memlend
