// Starting and stopping the controller's actor system: used by `memlend run`
// and by the tests that run the whole controller.
#pragma once

#include "actors/event_sink.hpp"
#include "firmware_hooks/platform.hpp"

#include <caf/actor_system_config.hpp>

#include <memory>
#include <optional>
#include <string>

namespace memlend {

struct RunOptions {
  policy::Scenario scenario;
  std::shared_ptr<platform::Platform> platform;
  double speed = 1;
  double origin_s = 0;
  std::optional<double> until_s;
  bool dry_run = false;
  std::string datastore;
  SinkOptions sink;
};

// Registers memlend's message types, under the names other nodes expect.
void register_types(caf::actor_system_config& cfg);

// Runs until the scenario clock reaches until_s, SIGINT/SIGTERM, or a fatal
// error; returns the process exit status (0, or 1 after a fatal error).
int run_controller(const RunOptions& options);

}  // namespace memlend
