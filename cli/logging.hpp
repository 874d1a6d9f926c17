// memlend's log: one line per event on stderr, which journald reads when
// systemd runs memlend. Everything logs through spdlog's default logger
// (spdlog::info(...), spdlog::warn(...)), so actors and libraries need no
// handle passed around; this file only sets that logger up.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace memlend::cli {

// trace, debug, info, warn, error, off.
inline constexpr std::string_view log_levels[] = {"trace", "debug", "info", "warn", "error", "off"};

// Adds --log-level LEVEL to cmd, `level` holding `fallback` unless given:
// "warn" for one-shot commands such as plan (quiet), "info" for run.
CLI::Option* add_log_level(CLI::App* cmd, std::string& level, std::string_view fallback);

// Points spdlog's default logger at stderr at `level` (one of log_levels).
// Under journald (JOURNAL_STREAM names our stderr) each line starts with
// its syslog priority, "<4>", so `journalctl -p warning` works and journald
// adds the time; on a terminal each line starts with the UTC time and the level.
void setup_logging(std::string_view level);

// The line prefix setup_logging uses, for tests: true when stderr is journald's stream.
bool stderr_is_journal();

}  // namespace memlend::cli
