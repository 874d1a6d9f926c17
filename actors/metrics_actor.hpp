// The metrics actor: the one writer of the Prometheus registry's gauges and
// event counters. Counting from the event log (which the event sink forwards)
// rather than in each actor keeps the actors free of metrics code and makes
// the counters agree with the log an operator reads. Gauges are set from
// facts, not bookkeeping: every sample period it reads the planner's view and
// the data plane's totals, so a missed event cannot leave a gauge wrong for
// longer than one period.
//
// In `memlend agent` it runs without a planner and exports only what the
// agent's own data path does.
#pragma once

#include "actors/actors.hpp"
#include "dataplane/data_plane.hpp"
#include "core/sim_clock.hpp"
#include "metrics/http_exposer.hpp"
#include "metrics/metrics.hpp"

#include <caf/typed_event_based_actor.hpp>

#include <caf/fwd.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace memlend {

// Prometheus metrics of a run or an agent.
struct MetricsOptions {
  std::shared_ptr<metrics::Registry> registry;  // none: no metrics
  // Starts serving the registry (see start_metrics_server). A null server
  // serves nothing; no function: nothing to start (or started already).
  std::function<Expected<std::unique_ptr<metrics::HttpExposer>>()> serve;
};

// Calls options.serve, if any, with SIGINT and SIGTERM blocked, so that the
// HTTP server's threads (which inherit the mask) never take one and die by
// its default action; the caller's mask is as it was afterwards. An error is
// the caller's to report (exit status 2) before anything else starts.
Expected<std::unique_ptr<metrics::HttpExposer>> start_metrics_server(const MetricsOptions& options);

struct MetricsConfig {
  metrics::Registry* registry = nullptr;  // outlives the actor system
  policy::Scenario scenario;              // hosts' capacities and RDMA NICs
  double speed = 1;                       // of the scenario clock
  double origin_s = 0;
  std::shared_ptr<DataPlane> plane;       // none: no data-path series
  bool hosts = true;                      // false in an agent: the controller has the cluster's view
};

struct metrics_state {
  static constexpr const char* name = "metrics";

  // A lease_released whose reason is not known yet: the same event ends a
  // lease when demand falls and when its VM moves to the donor, and only a
  // vm_migrated right after tells the two apart.
  struct Release {
    std::string vm;
    std::string donor;
    std::uint64_t tick = 0;  // the sample it arrived in
  };

  MetricsConfig config;
  SimClock clock;
  supervisor_actor supervisor;  // to find the planner
  planner_actor planner;
  std::uint64_t ticks = 0;
  std::map<std::string, metrics::HostMetrics, std::less<>> hosts;
  std::vector<Release> releases;
  std::set<std::string> recommended;      // VMs with a recommendation outstanding
  std::set<std::string> unsatisfied;      // VMs whose latest need was not met
  // The data path's totals at the last sample: counters grow by the difference.
  DataPathTotals last;
  std::map<std::string, std::uint64_t> mirror_lag;  // by VM, at the last sample
};

metrics_actor::behavior_type metrics_recorder(metrics_actor::stateful_pointer<metrics_state> self,
                                              MetricsConfig config);

// The metrics actor of a controller (hosts: the cluster's series) or an agent
// (its data path only); none without a registry.
metrics_actor spawn_metrics(caf::actor_system& sys, const MetricsOptions& options, const policy::Scenario& scenario,
                            double speed, double origin_s, std::shared_ptr<DataPlane> plane, bool hosts = true);

// Tells it whom to stop with: the supervisor (whose planner it also samples) or the agent.
void bind_metrics(const metrics_actor& m, const supervisor_actor& owner);
void bind_metrics(const metrics_actor& m, const agent_actor& owner);

}  // namespace memlend
