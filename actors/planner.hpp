// The planner: the cluster's one view of free resources (policy::Cluster)
// and the only actor that decides. It carries decisions out one at a time as
// small transactions: reserve at the donors (and the target), then commit
// and act, or cancel everything reserved, so that nothing is half-done and
// no megabyte is promised twice.
#pragma once

#include "actors/actors.hpp"
#include "actors/planner_job.hpp"
#include "dataplane/data_plane.hpp"
#include "persistence/store.hpp"
#include "policy/cluster.hpp"
#include "core/sim_clock.hpp"
#include "metrics/metrics.hpp"

#include <caf/typed_event_based_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>

namespace memlend {

// What the actors start from: the leases alive, the VMs recommended to move
// and when each VM began to borrow. From the scenario on a fresh start, from
// the store after a restart.
struct StartState {
  std::vector<LeaseInfo> leases;  // active or failed
  std::set<std::uint32_t> recommended;
  std::map<std::uint32_t, double> remote_since;
  std::uint64_t next_lease = 1;
  // Where each VM ran when the scenario began (agents rebuild from it).
  std::vector<policy::HostId> first_hosts;
  // The leadership epoch this controller raised in the store as it started
  // (0: no store); every agent that joins is told it.
  std::uint64_t epoch = 0;
};

// Leases a scenario says VMs already have, numbered from 1 in scenario order;
// the planner and the host ledgers start from the same list.
std::vector<LeaseInfo> initial_leases(const policy::Scenario& s);
StartState fresh_start(const policy::Scenario& s, double origin_s);

struct PlannerConfig {
  // The cluster as the actors start it: hosts up or down, VMs where they
  // run, their demand, and what they borrow (StartState.leases).
  policy::Scenario scenario;
  SimClock clock;
  bool dry_run = false;
  std::string datastore;  // where mirror files go
  // The donor servers of simulated hosts, stopped and started with the hosts.
  std::shared_ptr<DataPlane> plane;
  metrics::Registry* metrics = nullptr;  // decisions and their latency; none: not counted
  StartState start;
  // Every transition is written here before it is acted on; none in tests.
  std::shared_ptr<store::Store> store;
  std::string fingerprint;  // of the scenario, for the clock's heartbeat
};

struct planner_state {
  static constexpr const char* name = "planner";

  struct LeaseRecord {
    LeaseInfo info;
    lease_actor actor;
  };

  PlannerConfig config;
  std::unique_ptr<policy::Cluster> view;
  std::vector<host_proxy_actor> hosts;
  std::vector<vm_actor> vms;
  supervisor_actor supervisor;
  driver_actor driver;
  sink_actor sink;
  std::uint64_t next_lease = 1;
  std::map<std::uint64_t, LeaseRecord> leases;
  std::map<std::uint32_t, mirror_actor> mirrors;
  std::map<std::uint32_t, std::int64_t> mirror_mib;
  // Mirrors the data path could not write, and why: no copy of what their
  // VMs borrow, so a donor's failure loses it.
  std::map<std::uint32_t, std::string> mirror_failed;
  // Work waits here while a job is under way.
  JobQueue jobs;
  // The last thing said of each kind about a VM that is not acted on (why it
  // stays where it is; why it cannot be helped, as a VM asks again now and
  // then): the same answer for the same reason is said once.
  enum class Said { stays, unhelped };
  std::map<std::pair<std::uint32_t, Said>, std::string> said;
  // Whether `key` is news about the VM, this kind; remembers it.
  bool news(std::uint32_t vm, Said kind, const std::string& key) {
    auto& last = said[{vm, kind}];
    if (last == key) return false;
    last = key;
    return true;
  }
  // Each VM's latest demand as its node's estimator explained it (real nodes).
  std::map<std::uint32_t, std::string> demand_reasons;
  std::set<std::uint32_t> recommended;
  std::map<std::uint32_t, double> remote_since;
  // Transactions waiting for the store: what to do once they are durable.
  std::uint64_t next_token = 0;
  double last_beat = -1e300;  // the clock's last heartbeat to the store
  // What the store last heard of each VM and host, so a heartbeat writes only changes.
  std::map<std::uint32_t, std::string> written_vm;
  std::map<std::uint32_t, std::string> written_host;
  std::map<std::uint64_t, std::function<void()>> pending;

  const std::string& host_name(std::uint32_t h) const { return config.scenario.hosts[h].name; }
  const std::string& vm_name(std::uint32_t v) const { return config.scenario.vms[v].name; }
};

planner_actor::behavior_type planner(planner_actor::stateful_pointer<planner_state> self, PlannerConfig config,
                                     supervisor_actor supervisor, sink_actor sink);

}  // namespace memlend
