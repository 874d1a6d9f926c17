// memlend's log: one event at a time on stderr, or straight into the journal
// when systemd runs memlend. Code in any room logs with memlend::log
// (core/log.hpp), which carries what an event is about (VM, host, lease) as
// fields; code here may also call spdlog (spdlog::info(...)) for an event
// about nothing in particular. This file sets up spdlog's default logger, the
// one both end in, and installs it as core/log.hpp's writer.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <string_view>

namespace memlend::cli {

// trace, debug, info, warn, error, off.
inline constexpr std::string_view log_levels[] = {"trace", "debug", "info", "warn", "error", "off"};
inline constexpr std::string_view log_formats[] = {"text", "json"};

struct LogFlags {
  std::string level;
  std::string format = "text";
};

// Adds --log-level LEVEL and --log-format FORMAT to cmd; the level is
// `fallback` unless given: "warn" for one-shot commands such as plan (quiet),
// "info" for run.
void add_log_flags(CLI::App* cmd, LogFlags& flags, std::string_view fallback);

// Points spdlog's default logger, and so memlend::log, at stderr at the
// flags' level (one of log_levels), in their format:
// - json: one JSON object per line: time (UTC, RFC 3339 with milliseconds),
//   level, message, and the event's fields (event, vm, host, donor, lease, t_s).
// - text under journald (JOURNAL_STREAM names our stderr): each event goes to
//   the journal natively, its fields as MEMLEND_VM= and so on; should the
//   journal's socket refuse it, as a line on stderr that starts with its
//   syslog priority ("<4>"), so that journald still has it and its level.
// - text elsewhere: a line that starts with the UTC time and the level.
// A line holds one event: newlines in a message are folded into spaces.
void setup_logging(const LogFlags& flags);

// True when stderr is journald's stream (JOURNAL_STREAM names its device and inode).
bool stderr_is_journal();

}  // namespace memlend::cli
