#include "core/text.hpp"
#include "policy/operator_input.hpp"
#include "cli/cli.hpp"
#include "cli/config_file.hpp"
#include "cli/store_rows.hpp"

#include <algorithm>
#include <iostream>
#include <limits>
#include <map>
#include <memory>

namespace memlend::cli {

namespace {

constexpr const char* installed_agent_config = "/etc/memlend/agent.conf";

// What run says of an option set from the file, said of its line and key
// instead: "--speed: must be ..." becomes "FILE:12: key speed: must be ...".
std::string blame(const std::string& path, const std::map<std::string, int>& lines, const RunProblem& p) {
  std::string prefix = "--" + p.key + ":";
  std::string what = p.message.rfind(prefix, 0) == 0 ? p.message.substr(prefix.size() + 1) : p.message;
  auto it = lines.find(p.key);
  if (it == lines.end()) return path + ": key " + p.key + " (not set here, so its default): " + what;
  return path + ":" + std::to_string(it->second) + ": key " + p.key + ": " + what;
}

// The file's problems, each a line naming the file, the line and the key.
// A key must be an option of some memlend command and its value one that
// command takes; then the checks of the command the service starts with it
// (`run`, or `agent` for the agent's unit).
std::vector<std::string> problems_of(CLI::App& app, const CLI::App& self, const std::string& path,
                                     const std::string& for_command) {
  // A fresh command of its own: its checks read the options it holds.
  CLI::App scratch;
  RunCommand run = for_command == "agent" ? make_agent(scratch) : make_run(scratch);
  CLI::App* run_cmd = scratch.get_subcommands({}).front();
  std::vector<CLI::App*> commands{run_cmd};
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; }))
    if (sub != &self && sub->get_name() != run_cmd->get_name()) commands.push_back(sub);
  auto lines = read_config_lines(path, repeatable_keys({run_cmd}));
  if (!lines) return {lines.error().message};

  std::vector<std::pair<int, std::string>> out;  // by line; 0: not of one line
  std::map<std::string, int> run_keys;          // key → line
  for (const ConfigLine& l : *lines) {
    std::string where = path + ":" + std::to_string(l.line) + ": ";
    if (!l.problem.empty()) {
      out.emplace_back(l.line, where + l.problem);
      continue;
    }
    bool taken = false;
    for (CLI::App* cmd : commands) {
      CLI::Option* opt = l.key == "config" || l.key == "help" ? nullptr : cmd->get_option_no_throw("--" + l.key);
      if (!opt) continue;
      taken = true;
      if (auto bad = set_from_config_file(*opt, l.value)) {
        out.emplace_back(l.line, where + "key " + l.key + ": bad value \"" + clip(l.value) + "\": " + *bad +
                      (cmd == run_cmd ? "" : " (memlend " + cmd->get_name() + ")"));
        break;
      }
      if (cmd == run_cmd) run_keys[l.key] = l.line;
    }
    if (!taken) out.emplace_back(l.line, where + "unknown key " + clip(l.key) + ": no memlend command takes it");
  }
  for (const RunProblem& p : run.check()) {
    auto it = run_keys.find(p.key);
    out.emplace_back(it == run_keys.end() ? std::numeric_limits<int>::max() : it->second, blame(path, run_keys, p));
  }
  std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<std::string> lines_out;
  for (auto& [line, text] : out) lines_out.push_back(std::move(text));
  return lines_out;
}

}  // namespace

Action add_check_config(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "check-config",
      "Check a config file as `memlend run --config FILE` (or, with --for agent, `memlend agent`)\n"
      "reads it, starting nothing: exit 0 when it is good, else 2 and one line per problem\n"
      "(FILE:LINE: key KEY: what is wrong)");
  auto path = std::make_shared<std::string>();
  auto for_command = std::make_shared<std::string>("run");
  cmd->add_option("--config", *path,
                  "The config file to check (default " + std::string(installed_config) + ", with --for agent " +
                      installed_agent_config + ")")
      ->type_name("FILE");
  cmd->add_option("--for", *for_command,
                  "The command the file is for: run (the controller's unit) or agent (the agent's unit);\n"
                  "its own checks follow those of every key (default run)")
      ->check(CLI::IsMember({"run", "agent"}));
  return [&app, cmd, path, for_command] {
    if (path->empty()) *path = *for_command == "agent" ? installed_agent_config : installed_config;
    auto problems = problems_of(app, *cmd, *path, *for_command);
    for (const auto& p : problems) std::cerr << "memlend: " << one_line(p) << '\n';
    if (!problems.empty()) return exit_bad_input;
    std::cout << "memlend: " << *path << ": good\n";
    return exit_ok;
  };
}

}  // namespace memlend::cli
