#include "cli/cli.hpp"
#include "cli/config_file.hpp"
#include "cli/logging.hpp"

#include <iostream>
#include <memory>
#include <utility>
#include <vector>

namespace memlend::cli {

int bad_input(const std::string& message) {
  std::cerr << "memlend: " << one_line(attribute_to_config_file(message)) << '\n';
  return exit_bad_input;
}

std::optional<double> parse_duration(const std::string& text) {
  if (text.empty()) return std::nullopt;
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    return std::nullopt;
  }
  std::string unit = text.substr(used);
  double scale = 0;
  if (unit.empty() || unit == "s") scale = 1;
  else if (unit == "m" || unit == "min") scale = 60;
  else if (unit == "h") scale = 3600;
  else if (unit == "d") scale = 86400;
  else return std::nullopt;
  double seconds = value * scale;
  if (!(seconds >= 0) || seconds > 1e9) return std::nullopt;
  return seconds;
}

}  // namespace memlend::cli

int main(int argc, char** argv) {
  using namespace memlend::cli;
  CLI::App app{
      "memlend lends a VM memory from other hosts of its cluster when its own host has\n"
      "too little but enough CPU, keeps a local buffer and a mirror of that memory, and\n"
      "recommends moving the VM to its donor once it has leaned on it long enough."};
  app.name("memlend");
  app.require_subcommand(1);
  app.fallthrough(false);
#ifndef MEMLEND_VERSION
#define MEMLEND_VERSION "0.0.0"
#endif
  app.set_version_flag("--version", "memlend " MEMLEND_VERSION, "Print the version of memlend and exit");
  std::vector<std::pair<CLI::App*, Action>> commands;
  auto add = [&](Action (*adder)(CLI::App&)) {
    std::size_t before = app.get_subcommands({}).size();
    Action a = adder(app);
    commands.emplace_back(app.get_subcommands({}).at(before), std::move(a));
  };
  add(add_plan);
  add(add_run);
  add(add_state);
  add(add_why);
  add(add_agent);
  add(add_donor);
  add(add_probe);
  add(add_mount);
  add(add_inspect);
  add(add_version);
  add(add_check_config);
  add(add_support_bundle);
  add(add_members);
  // Every command takes --config, --log-level and --log-format, so that one config file and
  // one habit serve them all; commands that log nothing of their own still
  // log what the libraries they use report.
  for (auto& [sub, action] : commands) {
    if (sub->get_name() == "version" || sub->get_name() == "check-config") continue;
    if (!sub->get_option_no_throw("--log-level")) {
      auto log = std::make_shared<LogFlags>();
      add_log_flags(sub, *log, "warn");
      action = [log, inner = std::move(action)] {
        setup_logging(*log);
        return inner();
      };
    }
    if (!sub->get_option_no_throw("--config")) action = with_config_file(sub, std::move(action));
  }
  // CLI11 says only that a subcommand is required; name the one it did not know.
  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (auto& [sub, action] : commands) known = known || sub->get_name() == argv[1];
    if (!known) return bad_input(std::string("unknown command \"") + argv[1] + "\" (see memlend --help)");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    if (what.empty()) what = e.get_name();
    return bad_input(what + " (see memlend --help)");
  }
  for (auto& [sub, action] : commands)
    if (sub->parsed()) return action();
  return bad_input("no command given (see memlend --help)");
}
