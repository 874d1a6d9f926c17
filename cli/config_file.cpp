#include "cli/config_file.hpp"

#include "policy/operator_input.hpp"

#include <iostream>
#include <map>
#include <memory>
#include <sstream>

namespace memlend::cli {

namespace {

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

bool is_key(const std::string& k) {
  if (k.empty()) return false;
  for (char c : k)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
  return true;
}

// The value part of a line: a quoted string, or a bare word or number up to
// a comment. Returns an error text when it is neither.
std::optional<std::string> parse_value(const std::string& text, std::string& out) {
  if (text.empty()) return "no value after '='";
  char q = text.front();
  std::size_t end = 0;
  if (q == '"' || q == '\'') {
    std::size_t i = 1;
    for (; i < text.size() && text[i] != q; ++i) {
      if (q == '"' && text[i] == '\\' && i + 1 < text.size()) {
        char c = text[++i];
        switch (c) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case 'n': out += '\n'; break;
          case 't': out += '\t'; break;
          default: return std::string("unknown escape \\") + c + " in a quoted value";
        }
      } else {
        out += text[i];
      }
    }
    if (i >= text.size()) return std::string("the value has no closing ") + q;
    end = i + 1;
    std::string rest = trim(text.substr(end));
    if (!rest.empty() && rest.front() != '#') return "text after the closing quote: " + clip(rest);
    return std::nullopt;
  }
  auto hash = text.find(" #");
  out = trim(hash == std::string::npos ? text : text.substr(0, hash));
  if (out.empty()) return "no value after '='";
  return std::nullopt;
}

// Options of `memlend <other command>`: a shared file may hold their keys.
bool another_command_takes(const CLI::App& cmd, const std::string& name) {
  const CLI::App* parent = cmd.get_parent();
  if (!parent) return false;
  for (const CLI::App* sub : parent->get_subcommands([](const CLI::App*) { return true; })) {
    if (sub == &cmd) continue;
    if (sub->get_option_no_throw(name)) return true;
  }
  return false;
}

std::string keys_of(const CLI::App& cmd) {
  std::string keys;
  for (const CLI::Option* o : cmd.get_options()) {
    const auto& names = o->get_lnames();
    if (names.empty() || names.front() == "help" || names.front() == "config") continue;
    keys += (keys.empty() ? "" : ", ") + names.front();
  }
  return keys;
}

}  // namespace

namespace {

// The file and the keys it set, of the one command this process runs.
struct Applied {
  std::string path;
  std::map<std::string, int> keys;
};
Applied& applied_file() {
  static Applied a;
  return a;
}

}  // namespace

const std::map<std::string, int>& applied_file_keys() { return applied_file().keys; }

std::string attribute_to_config_file(const std::string& message) {
  const auto& a = applied_file();
  if (message.rfind("--", 0) != 0) return message;
  auto colon = message.find(':');
  if (colon == std::string::npos) return message;
  auto it = a.keys.find(message.substr(2, colon - 2));
  if (it == a.keys.end()) return message;
  return a.path + ":" + std::to_string(it->second) + ": key " + it->first + message.substr(colon);
}

std::set<std::string> repeatable_keys(const std::vector<const CLI::App*>& commands) {
  std::set<std::string> out;
  for (const CLI::App* cmd : commands)
    for (const CLI::Option* o : cmd->get_options())
      if (!o->get_lnames().empty() && o->get_expected_max() > 1) out.insert(o->get_lnames().front());
  return out;
}

Expected<std::vector<ConfigLine>> read_config_lines(const std::string& path, const std::set<std::string>& repeatable) {
  auto text = read_input_file(path, "config file", max_config_bytes);
  if (!text) return text.error();
  std::istringstream in(*text);
  std::map<std::string, int> seen;  // key → line
  std::vector<ConfigLine> out;
  std::string raw;
  int line_no = 0;
  while (std::getline(in, raw)) {
    ++line_no;
    std::string line = trim(raw);
    if (line.empty() || line.front() == '#') continue;
    ConfigLine& l = out.emplace_back();
    l.line = line_no;
    if (line.front() == '[') {
      l.problem = "sections are not used: every key is a long option of a memlend command";
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string::npos) {
      l.problem = "expected key = value, found \"" + clip(line) + "\"";
      continue;
    }
    std::string key = trim(line.substr(0, eq));
    if (!is_key(key)) {
      l.problem = "\"" + clip(key) + "\" is not a key (lower-case letters, digits and '-')";
      continue;
    }
    if (auto bad = parse_value(trim(line.substr(eq + 1)), l.value)) {
      l.problem = "key " + clip(key) + ": " + *bad;
      continue;
    }
    if (auto [it, fresh] = seen.emplace(key, line_no); !fresh && !repeatable.count(key)) {
      l.problem = "key " + clip(key) + " is set twice (first on line " + std::to_string(it->second) + ")";
      continue;
    }
    l.key = std::move(key);
  }
  return out;
}

std::optional<std::string> set_from_config_file(CLI::Option& opt, const std::string& value) {
  try {
    if (opt.get_expected_min() == 0) {
      if (value == "false") return std::nullopt;  // the same as leaving the flag out
      if (value != "true") return std::string("a flag is true or false");
      opt.add_result(opt.get_flag_value(opt.get_lnames().front(), "true"));
    } else {
      opt.add_result(value);
    }
    opt.run_callback();
  } catch (const CLI::Error& e) {
    // CLI11 repeats the value in its message.
    return clip(e.what(), 200);
  }
  return std::nullopt;
}

namespace {

std::optional<Error> apply_lines(CLI::App& cmd, const std::string& path, std::map<std::string, int>* applied) {
  auto lines = read_config_lines(path, repeatable_keys({&cmd}));
  if (!lines) return lines.error();
  // The command line wins, over every line of a key it gave.
  std::set<std::string> given;
  for (const ConfigLine& l : *lines)
    if (CLI::Option* opt = l.key.empty() ? nullptr : cmd.get_option_no_throw("--" + l.key); opt && opt->count() > 0)
      given.insert(l.key);
  std::string command = "memlend " + cmd.get_name();
  for (const ConfigLine& l : *lines) {
    std::string where = path + ":" + std::to_string(l.line) + ": ";
    if (!l.problem.empty()) return Error{where + l.problem};
    const std::string& key = l.key;
    std::string name = "--" + key;
    CLI::Option* opt = key == "config" || key == "help" ? nullptr : cmd.get_option_no_throw(name);
    if (!opt) {
      if (key != "config" && key != "help" && another_command_takes(cmd, name)) continue;
      std::string dashed = key;
      for (char& c : dashed)
        if (c == '_') c = '-';
      if (dashed != key && cmd.get_option_no_throw("--" + dashed))
        return Error{where + "unknown key " + clip(key) + " (did you mean " + clip(dashed) + "?)"};
      return Error{where + "unknown key " + clip(key) + " (" + command + " takes: " + keys_of(cmd) + ")"};
    }
    if (given.count(key)) continue;
    if (auto bad = set_from_config_file(*opt, l.value))
      return Error{where + "key " + key + ": bad value \"" + clip(l.value) + "\": " + *bad};
    if (applied) applied->emplace(key, l.line);
  }
  return std::nullopt;
}

}  // namespace

std::optional<Error> apply_config_file(CLI::App& cmd, const std::string& path, std::map<std::string, int>* applied) {
  // One printable line at the source, as parse_scenario's: the messages echo
  // keys and values, and a quoted value may hold "\n" (the fuzzer's find).
  auto bad = apply_lines(cmd, path, applied);
  if (bad) bad->message = one_line(bad->message);
  return bad;
}

Action with_config_file(CLI::App* cmd, Action action) {
  auto path = std::make_shared<std::string>();
  cmd->add_option("--config", *path,
                  "Read options from this file: one `key = value` per line, the key being a long\n"
                  "option without its dashes (e.g. log-level = \"debug\"); the command line wins;\n"
                  "a regular file of at most 1 MiB")
      ->type_name("FILE");
  return [cmd, path, action = std::move(action)] {
    if (!path->empty()) {
      // What bad_input prints; that lives in main.cpp, which tests do not link.
      auto& a = applied_file();
      a.path = *path;
      if (auto bad = apply_config_file(*cmd, *path, &a.keys)) {
        std::cerr << "memlend: " << bad->message << '\n';
        return exit_bad_input;
      }
    }
    return action();
  };
}

}  // namespace memlend::cli
