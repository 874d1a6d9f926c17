// Every actor interface of memlend, one commented line per handler, so the
// whole protocol reads in one place.
//
//   platform driver ──sample──> VM actors ──need/surplus/recommend──> planner
//                   ──health──> host actors ──hostdown/hostup──────> planner
//   planner ──reserve/commit/cancel/release──> host actors (two-phase at donors)
//           ──spawn──> supervisor ──> lease actors, mirror writers
//           ──attach/detach/migrate──> platform driver
//   everyone ──event──> event sink (event log, console, store) ──event──> metrics
//   metrics ──get──> planner (its view, each sample period)
//   pulse ──get──> supervisor ──> planner (its view: the actors answer; systemd's watchdog)
#pragma once

#include "actors/atoms.hpp"
#include "actors/messages.hpp"
#include "core/need_answer.hpp"
#include "core/planner_view.hpp"

#include <caf/actor.hpp>
#include <caf/message.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <string>

namespace memlend {

using caf::reacts_to;
using caf::replies_to;

// Writes the event log (JSON lines), prints the console lines.
using sink_actor = caf::typed_actor<
    reacts_to<atom::event, LogEvent>,       // append one event (stored first, with a store)
    reacts_to<atom::event, atom::commit, LogEvent>,  // an event the store already holds: write it out
    replies_to<atom::flush>::with<bool>>;   // everything so far is written out

// One per host: its telemetry and its own ledger of what it lends, which
// has the last word on a reservation (the planner's view may be stale).
using host_actor = caf::typed_actor<
    reacts_to<atom::health, platform::HostSample>,                       // telemetry
    replies_to<atom::reserve, std::uint64_t, std::int64_t>::with<bool>,  // phase one: lease id, MiB
    replies_to<atom::reservevm, std::uint32_t, std::int64_t, std::int64_t>::with<bool>,  // VM, MiB, MHz
    reacts_to<atom::commit, std::uint64_t>,                 // phase two of a lease
    reacts_to<atom::cancel, std::uint64_t>,                 // abandon phase one of a lease
    reacts_to<atom::commit, atom::migrate, std::uint32_t, std::int64_t>,  // the VM has arrived; MiB it lent it
    reacts_to<atom::cancel, atom::migrate, std::uint32_t>,  // the VM is not coming
    reacts_to<atom::release, std::uint64_t>,                // a lease ended, the memory is back
    replies_to<atom::get>::with<HostCheckpoint>,            // its ledger
    reacts_to<atom::admit, HostFacts>>;                     // its agent rejoined with new facts
// In cluster mode the same actor is also the agent's proxy (see host_proxy_actor).

// A host actor in cluster mode: the interface above plus its agent's side.
// Telemetry doubles as the heartbeat: silence for heartbeat_misses periods
// means the host is down.
using host_proxy_actor = host_actor::extend<
    reacts_to<atom::telemetry, platform::HostSample, std::vector<platform::VmSample>>,  // from its agent
    reacts_to<atom::bind, caf::actor, std::uint64_t>,  // its agent joined: handle, incarnation
    reacts_to<atom::silence, std::uint64_t>,           // heartbeat timer (generation)
    reacts_to<atom::alive>,                            // from its agent: a reading is under way
    reacts_to<atom::fence, std::vector<std::uint64_t>>,  // leases its agent may keep as a donor
    reacts_to<atom::mirrorfail, std::string, std::string>>;  // from its agent: a VM's mirror cannot be written, why

// One per VM: detection with hysteresis, and the clock of its remote use.
using vm_actor = caf::typed_actor<
    reacts_to<atom::sample, platform::VmSample>,  // telemetry
    reacts_to<atom::granted, double>,             // it got remote memory at this scenario time
    reacts_to<atom::remind, std::uint64_t>,       // its recommendation timer (generation)
    reacts_to<atom::admit, std::uint32_t, std::string>,  // a host joined: its id and name
    replies_to<atom::get>::with<VmCheckpoint>>;   // its state

// One per donor lease: the data-path connection and the lease's state.
using lease_actor = caf::typed_actor<
    reacts_to<atom::release, bool>,          // end the lease; true: keep its region for the lease replacing it
    reacts_to<atom::failover>,               // its donor is gone
    reacts_to<atom::moved, std::uint32_t>,   // its recipient VM now runs on this host
    reacts_to<atom::commit, LeaseInfo>,      // the data path is set up: the donor's grant
    reacts_to<atom::cancel, std::string>,    // the data path could not be set up: why
    replies_to<atom::get>::with<LeaseInfo>>;

// One per VM with remote memory: its mirror file on the shared datastore.
using mirror_actor = caf::typed_actor<
    reacts_to<atom::resize, std::int64_t>,               // new size in MiB
    reacts_to<atom::failover, std::uint32_t>,            // serve reads of this donor's part
    reacts_to<atom::remove>,                             // delete the file and stop
    replies_to<atom::get>::with<MirrorInfo>>;

// One per node (the `memlend agent` process): the host's side. It samples its
// own host and sends the telemetry to its host actor at the controller; a
// platform action reaches the agents it concerns (the VM's host, old and new,
// and its donors) as the VM's absolute state.
using agent_actor = caf::typed_actor<
    reacts_to<atom::connect>,                                        // (re)connect timer
    reacts_to<atom::tick, std::uint64_t>,                            // sampling timer (generation)
    reacts_to<atom::attach, RemoteState>,                            // a VM's host and leases now
    reacts_to<atom::fence, std::vector<std::uint64_t>>,                  // keep only these leases
    reacts_to<atom::mirrorfail, std::string, std::string>,               // its data path: a VM's mirror failed, why
    // A live migration, from the controller only. The target first: ready to
    // take VM in? → whether, and the address to migrate to (or why not).
    replies_to<atom::reserve, atom::migrate, std::string>::with<bool, std::string>,
    // The VM's host: migrate VM to HOST at ADDRESS → whether it runs there, or why not.
    replies_to<atom::migrate, std::string, std::string, std::string>::with<bool, std::string>,
    reacts_to<atom::cancel, atom::migrate, std::string>,                 // the target: it did not happen
    replies_to<atom::get>::with<std::string>,                            // its state, JSON
    reacts_to<atom::shutdown>>;

// Owns the platform backend: samples it on the scenario clock, carries out actions.
using driver_actor = caf::typed_actor<
    reacts_to<atom::tick>,
    replies_to<atom::attach, std::uint32_t, std::uint32_t, std::int64_t, std::uint64_t>::with<bool>,  // VM, donor, MiB, lease
    replies_to<atom::detach, std::uint32_t, std::uint32_t, std::int64_t, std::uint64_t>::with<bool>,  // VM, donor, MiB, lease
    replies_to<atom::migrate, std::uint32_t, std::uint32_t>::with<bool>,               // VM, target
    reacts_to<atom::rebind, std::uint32_t, host_actor>,  // a host actor's handle, new after a restart
    reacts_to<atom::rebind, std::uint32_t, vm_actor>,    // a VM actor's handle, new after a restart
    reacts_to<atom::rebind, std::uint32_t, agent_actor>, // cluster mode: a host's agent joined
    // Cluster mode: an agent's VMs, to route: host, whether they are all it runs, the VMs.
    reacts_to<atom::sample, std::uint32_t, bool, std::vector<platform::VmSample>>,
    reacts_to<atom::commit, LeaseInfo>,  // cluster mode: a lease's grant, for the recipient's agent to map
    reacts_to<atom::admit, std::uint32_t, std::string>,    // a host joined: its id and name
    reacts_to<atom::admit, std::uint32_t, std::string, std::uint32_t>,  // a VM first seen: id, name, host
    reacts_to<atom::shutdown>>;

// The cluster's one view of free resources; decides with policy/ and carries
// decisions out one at a time, so no megabyte is promised twice.
// The reporter of a mirror failure that the controller's own data path saw
// (memlend run), rather than a host's agent.
inline constexpr std::uint32_t own_data_path = ~0u;

using planner_actor = caf::typed_actor<
    replies_to<atom::need, std::uint32_t, std::int64_t, std::int64_t>::with<NeedAnswer>,     // VM, demand → what was done
    replies_to<atom::surplus, std::uint32_t, std::int64_t, std::int64_t>::with<std::int64_t>, // VM, demand → MiB released
    replies_to<atom::recommend, std::uint32_t, std::int64_t>::with<bool>,  // VM, seconds of remote use
    replies_to<atom::moved, std::uint32_t, std::uint32_t>::with<bool>,  // a VM its hypervisor moved: VM, its host now
    reacts_to<atom::sample, std::vector<platform::VmSample>>,  // telemetry keeps the view true
    reacts_to<atom::commit, std::uint64_t, bool, std::string>,  // the store: transaction durable (or why not)
    reacts_to<atom::commit, LeaseInfo>,                         // a lease actor's grant, to record
    reacts_to<atom::hostdown, std::uint32_t>,
    reacts_to<atom::hostup, std::uint32_t>,
    reacts_to<atom::mirrorfail, std::uint32_t, std::string, std::string>,  // reporting host, VM, why its mirror cannot be written
    reacts_to<atom::rebind, std::uint32_t, host_proxy_actor>,  // a child's handle, new after a restart
    reacts_to<atom::rebind, std::uint32_t, vm_actor>,
    reacts_to<atom::rebind, std::uint64_t, lease_actor>,
    reacts_to<atom::rebind, std::uint32_t, mirror_actor>,
    reacts_to<atom::rebind, driver_actor>,                     // the driver, spawned after it
    reacts_to<atom::admit, std::uint32_t, HostFacts, bool>,    // a host joined (new id; up?) or rejoined with new facts
    reacts_to<atom::admit, std::uint32_t, std::string, std::uint32_t>,  // a VM first seen: id, name, host
    replies_to<atom::join>::with<std::vector<LeaseInfo>, std::vector<Placement>>,  // the world, for a joining agent
    replies_to<atom::get>::with<PlannerView>>;  // its view (metrics, tests)

// Spawns, monitors and restarts every other actor.
using supervisor_actor = caf::typed_actor<
    replies_to<atom::spawn, LeaseInfo>::with<lease_actor>,
    replies_to<atom::spawn, MirrorInfo>::with<mirror_actor>,
    reacts_to<atom::checkpoint, ChildKind, std::uint64_t, caf::message>,  // kind, key, state
    reacts_to<atom::restart, ChildKind, std::uint64_t>,                   // backoff timer
    replies_to<atom::get, ChildKind, std::uint64_t>::with<caf::actor>,    // a child's handle
    replies_to<atom::admit, HostFacts>::with<std::uint32_t>,  // a host by name: its id, new or known
    replies_to<atom::admit, std::string, std::uint32_t>::with<std::uint32_t>,  // a VM by name on a host: its id
    reacts_to<atom::shutdown>>;

// Cluster mode: the controller's door. An agent joins with its hello and its
// own handle and gets the world and its host actor's handle back.
using registrar_actor = caf::typed_actor<
    replies_to<atom::challenge>::with<std::string>,  // a fresh nonce, good for one join
    replies_to<atom::join, AgentHello, caf::actor>::with<JoinReply, caf::actor>>;

// The controller's pulse: each period it asks the supervisor for the planner
// and the planner for its view; an answer through both is what keeps the
// systemd watchdog fed and /readyz ready, so a wedged actor shows as silence.
using pulse_actor = caf::typed_actor<
    reacts_to<atom::tick>>;  // its timer

// Keeps the Prometheus registry true: counts the events of the log, and each
// sample period sets the gauges from the planner's view and the data path.
using metrics_actor = caf::typed_actor<
    reacts_to<atom::event, LogEvent>,  // an event of the log, to count
    reacts_to<atom::tick>,             // its sampling timer
    reacts_to<atom::rebind, supervisor_actor>,  // its owner, whose planner it also samples: stop with it
    reacts_to<atom::rebind, agent_actor>>;      // its owner in an agent: stop with it

}  // namespace memlend
