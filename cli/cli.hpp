// The memlend command line: one file per subcommand, each adding itself to
// the application and returning what to run once the arguments are parsed.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>

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

// Prints "memlend: <message>" on stderr and returns exit_bad_input.
int bad_input(const std::string& message);

// "90", "90s", "20m", "1.5h", "1200s" → seconds; nullopt when it is none of these.
std::optional<double> parse_duration(const std::string& text);

}  // namespace memlend::cli
