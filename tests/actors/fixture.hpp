// A whole controller on CAF's test coordinator: the scheduler runs only when
// the test says so and scenario time moves only when the test advances it,
// so every actor test is deterministic and sleeps never.
#pragma once

#include "node/controller.hpp"
#include "actors/metrics_actor.hpp"
#include "actors/supervisor.hpp"
#include "scenario/scenario.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace memlend::test {

inline caf::actor_system_config& testing_config(caf::actor_system_config& cfg, bool own_node = false) {
  cfg.set("scheduler.policy", caf::atom("testing"));
  register_types(cfg);
  // Without the middleman every actor system's node id is the same invalid
  // one; with it (its test backend: no network, no thread of its own) each
  // has its own, as each process of a cluster has.
  if (own_node) {
    cfg.load<caf::io::middleman>();
    cfg.set("middleman.network-backend", caf::atom("testing"));
  }
  return cfg;
}

class ControllerFixture {
 public:
  // With `registry`, a metrics actor counts and samples into it, as in `run --metrics`.
  // With `cluster`, hosts are agents' to report, and they join through the registrar.
  // With an `epoch`, it is one term of a replicated store's controller: it
  // tells agents that epoch, and its process is a node of its own.
  explicit ControllerFixture(const std::string& scenario_json, bool dry_run = false,
                             metrics::Registry* registry = nullptr, ClusterConfig cluster = {},
                             std::uint64_t epoch = 0)
      : sys(testing_config(cfg, epoch != 0)),
        sched(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())),
        events(std::make_shared<std::vector<LogEvent>>()) {
    auto sc = platform::parse_scenario(scenario_json, "test scenario");
    if (!sc) throw std::runtime_error(sc.error().message);
    scenario = *sc;
    datastore = std::filesystem::temp_directory_path() /
                ("memlend-actors-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    std::filesystem::create_directories(datastore);
    SinkOptions so;
    so.console = false;
    so.capture = events;
    if (registry) so.metrics = sys.spawn(metrics_recorder, MetricsConfig{registry, scenario, 1, 0, nullptr, true});
    sink = sys.spawn(event_sink, so);
    SupervisorConfig c;
    c.scenario = scenario;
    c.start = fresh_start(scenario, 0);
    c.start.epoch = epoch;
    c.speed = 1;
    c.dry_run = dry_run;
    c.datastore = datastore.string();
    c.platform = platform::make_sim(scenario);
    c.sink = sink;
    c.metrics = registry;
    c.cluster = std::move(cluster);
    sup = sys.spawn(supervisor, c);
    bind_metrics(so.metrics, sup);
    sched.run();
    start = sched.clock().current_time;
  }

  ~ControllerFixture() {
    // Stops the way production does: the supervisor takes down its children.
    caf::anon_send(sup, atom::shutdown::value);
    for (int i = 0; i < 1000 && (sched.has_job() || sched.clock().has_pending_timeout()); ++i) {
      sched.run();
      sched.clock().trigger_timeouts();
    }
    std::error_code ec;
    std::filesystem::remove_all(datastore, ec);
  }

  double now() const {
    return std::chrono::duration<double>(sched.clock().current_time - start).count();
  }

  // Moves scenario time to t, firing every timer due on the way, in order.
  void run_until(double t) {
    auto target = start + std::chrono::duration_cast<caf::timespan>(std::chrono::duration<double>(t));
    auto& clock = sched.clock();
    sched.run();
    while (!clock.schedule().empty() && clock.schedule().begin()->first <= target) {
      auto next = clock.schedule().begin()->first;
      if (next > clock.current_time)
        clock.advance_time(next - clock.current_time);
      else
        clock.trigger_timeout();
      sched.run();
    }
    if (clock.current_time < target) clock.advance_time(target - clock.current_time);
    sched.run();
  }

  // A child's handle, from the supervisor's registry.
  caf::actor child(ChildKind kind, std::uint64_t key) {
    caf::scoped_actor self{sys};
    self->send(sup, atom::get::value, kind, key);
    sched.run();
    caf::actor out;
    // After run() a reply is in the mailbox or will never come: do not wait.
    self->receive([&](caf::actor a) { out = a; }, caf::after(std::chrono::seconds(0)) >> [] {});
    return out;
  }

  template <class Result, class Handle, class... Ts>
  Result ask(const Handle& h, Ts... xs) {
    caf::scoped_actor self{sys};
    self->send(h, xs...);
    sched.run();
    Result out{};
    bool answered = false;
    self->receive([&](Result r) { out = std::move(r); answered = true; },
                  caf::after(std::chrono::seconds(0)) >> [] {});
    if (!answered) throw std::runtime_error("no answer: the actor is gone");
    return out;
  }

  // The planner's view now.
  PlannerView view() {
    return ask<PlannerView>(caf::actor_cast<planner_actor>(child(ChildKind::planner, 0)), atom::get::value);
  }

  std::vector<LogEvent> named(const std::string& event) const {
    std::vector<LogEvent> out;
    for (const auto& e : *events)
      if (e.event == event) out.push_back(e);
    return out;
  }

  caf::actor_system_config cfg;
  caf::actor_system sys;
  caf::scheduler::test_coordinator& sched;
  std::shared_ptr<std::vector<LogEvent>> events;
  policy::Scenario scenario;
  std::filesystem::path datastore;
  sink_actor sink;
  supervisor_actor sup;
  caf::actor_clock::time_point start;

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
};

}  // namespace memlend::test
