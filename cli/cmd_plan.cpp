#include "actors/policy/planner.hpp"
#include "cli/cli.hpp"
#include "cli/plan_output.hpp"
#include "firmware_hooks/scenario.hpp"

#include <iostream>

namespace memlend::cli {

Action add_plan(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "plan",
      "Decide, once, what memlend would do for a cluster snapshot: for each VM in\n"
      "scenario order, one decision (none, remote_memory, migrate,\n"
      "recommend_migration or unsatisfied) with its reason. Changes nothing.");
  auto scenario = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_option("--scenario", *scenario, "Scenario file (JSON) describing the cluster")->required();
  cmd->add_flag("--json", *as_json, "Print the decisions as one JSON document");
  return [scenario, as_json] {
    auto sc = platform::load_scenario(*scenario);
    if (!sc) return bad_input(sc.error().message);
    policy::Cluster cluster(*sc);
    auto decisions = cluster.plan();
    if (*as_json) {
      std::cout << plan_json(cluster, decisions).dump(2) << '\n';
    } else {
      for (const auto& d : decisions) std::cout << decision_line(cluster, d) << '\n';
    }
    return exit_ok;
  };
}

}  // namespace memlend::cli
