// Options from a config file as well as the command line, the command line
// winning. The file is `key = value` lines (a subset of TOML: `#` comments,
// "double" or 'single' quoted strings, true/false); each key is the long
// option of the command without its dashes, so the README's option list and
// --help are the list of keys too.
//
// One file serves every command (the package's /etc/memlend/memlend.conf): a
// key that only another memlend command takes is skipped; a key that no
// command takes is an error. So is a bad value, a repeated key or a
// malformed line; each error names the file, the line and the key.
#pragma once

#include "core/expected.hpp"
#include "cli/cli.hpp"

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace memlend::cli {

// Adds `--config FILE` to cmd. The returned action reads the file (when one
// was given), sets every option of cmd that the command line left unset, and
// then runs `action`; a bad file makes it return exit_bad_input instead.
// Options marked ->required() cannot come from the file: CLI11 checks them
// before any action runs, so a command that takes a required option from the
// file checks for it in its action instead.
Action with_config_file(CLI::App* cmd, Action action);

// The work of with_config_file, for tests and for a command that loads its
// file at another moment.
// `applied`, when given, receives each key the file set (key → line).
std::optional<Error> apply_config_file(CLI::App& cmd, const std::string& path,
                                       std::map<std::string, int>* applied = nullptr);

// One line of a config file that says something: a key and its value, or
// the problem that makes it neither (malformed, a bad quote, a key repeated).
struct ConfigLine {
  int line = 0;
  std::string key;
  std::string value;
  std::string problem;  // empty: key and value hold
};

// Every such line of the file, in order; an error only when the file cannot
// be read. Whether a command takes the key is the caller's question. A key
// may be set once, but those of `repeatable` (options that take several
// values, as --qemu-vm does on the command line) once per value.
Expected<std::vector<ConfigLine>> read_config_lines(const std::string& path,
                                                    const std::set<std::string>& repeatable = {});

// The keys of `commands`' options that take several values.
std::set<std::string> repeatable_keys(const std::vector<const CLI::App*>& commands);

// Gives `opt` a file's value as the same value on the command line would
// (a flag takes true or false; false leaves it unset). The reason, when the
// option refuses it.
std::optional<std::string> set_from_config_file(CLI::Option& opt, const std::string& value);

// The keys --config's file set for this process's command (key → line).
const std::map<std::string, int>& applied_file_keys();

// A value is checked by the command's action, whose error names the option
// ("--metrics: ..."); when that option's value came from the config file the
// error names the file, the line and the key instead. Other messages pass as
// they are.
std::string attribute_to_config_file(const std::string& message);

}  // namespace memlend::cli
