#include "policy/cluster.hpp"
#include "cli/cli.hpp"
#include "cli/config_file.hpp"
#include "cli/logging.hpp"
#include "cli/plan_output.hpp"
#include "scenario/scenario.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
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
  auto log = std::make_shared<LogFlags>();
  // Not ->required(): the config file may name it, and CLI11 checks required
  // options before the file is read.
  cmd->add_option("--scenario", *scenario,
                  "Scenario file (JSON, a regular file of at most 64 MiB) describing the cluster (required)")
      ->type_name("FILE");
  cmd->add_flag("--json", *as_json, "Print the decisions as one JSON document");
  // Quiet unless asked: the decisions on stdout are the whole answer.
  add_log_flags(cmd, *log, "warn");
  return with_config_file(cmd, [scenario, as_json, log] {
    setup_logging(*log);
    if (scenario->empty()) return bad_input("plan: --scenario FILE is required");
    auto sc = platform::load_scenario(*scenario);
    if (!sc) return bad_input(sc.error().message);
    spdlog::debug("scenario {}: {} hosts, {} VMs", *scenario, sc->hosts.size(), sc->vms.size());
    auto start = std::chrono::steady_clock::now();
    policy::Cluster cluster(*sc);
    auto decisions = cluster.plan();
    spdlog::info("planned {} VMs in {:.3f} ms", decisions.size(),
                 std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    if (*as_json) {
      std::cout << plan_json(cluster, decisions).dump(2) << '\n';
    } else {
      for (const auto& d : decisions) std::cout << decision_line(cluster, d) << '\n';
    }
    return exit_ok;
  });
}

}  // namespace memlend::cli
