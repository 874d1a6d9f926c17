// The memlend command line: one file per subcommand, each adding itself to
// the application and returning what to run once the arguments are parsed.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace memlend::cli {

// Exit statuses: bad input (flags, files, databases) is always 2.
inline constexpr int exit_ok = 0;
inline constexpr int exit_failure = 1;
inline constexpr int exit_bad_input = 2;

using Action = std::function<int()>;

Action add_donor(CLI::App& app);
Action add_plan(CLI::App& app);
Action add_probe(CLI::App& app);
Action add_mount(CLI::App& app);
Action add_run(CLI::App& app);
Action add_state(CLI::App& app);
Action add_why(CLI::App& app);
Action add_version(CLI::App& app);
Action add_agent(CLI::App& app);
Action add_inspect(CLI::App& app);
Action add_check_config(CLI::App& app);
Action add_support_bundle(CLI::App& app);
Action add_members(CLI::App& app);

// A problem `run` finds with its options: the option's long name (its key in
// a config file) and the line bad_input prints.
struct RunProblem {
  std::string key;
  std::string message;
};

// `run` as check-config needs it too: besides the action, its checks of the
// options as they stand (scenario, durations, addresses, paths, TLS files),
// every problem they find, touching nothing.
struct RunCommand {
  Action action;
  std::function<std::vector<RunProblem>()> check;
};
RunCommand make_run(CLI::App& app);
// The agent's likewise (its checks read the TLS and secret files, and the
// scenario, but reach no platform).
RunCommand make_agent(CLI::App& app);

// Prints "memlend: <message>" on stderr and returns exit_bad_input.
int bad_input(const std::string& message);

// "90", "90s", "20m", "1.5h", "1200s" → seconds; nullopt when it is none of these.
std::optional<double> parse_duration(const std::string& text);

}  // namespace memlend::cli
