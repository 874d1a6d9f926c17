#include "cli/cli.hpp"

namespace memlend::cli {

// Replaced by the actor system's run command.
Action add_run(CLI::App& app) {
  app.add_subcommand("run", "Run the controller (not yet built)");
  return [] { return bad_input("run: not built yet"); };
}

}  // namespace memlend::cli
