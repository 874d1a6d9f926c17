// An event of memlend's log with what it is about: the VM, the host, the
// lease. A collector selects by those (`journalctl MEMLEND_VM=web-1`, a field
// of a JSON line) rather than by the words of the message, which may change.
//
// Any room logs here, with no logger passed around and no dependency on the
// logging library: the command installs the writer (cli/logging.hpp: text,
// JSON lines or the journal, through spdlog). Until one is installed (a test,
// a tool) an event is a plain line on stderr, so that none is lost.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace memlend::log {

enum class Level { trace, debug, info, warn, error };

// Each empty (0 for the lease) when the event has none.
struct Fields {
  std::string event;  // its name in the event log (lease_granted, donor_failed, ...)
  std::string vm;
  std::string host;   // where it happens; for a lease, the host of the VM it lends to
  std::string donor;  // for a lease, the host that lends
  std::uint64_t lease = 0;
  std::optional<double> t_s;  // the controller's scenario clock, for its events
};

// Called once per event, from any thread; may drop it below its level.
using Writer = void (*)(Level, const Fields&, std::string_view message);

namespace detail {
struct Installed {
  std::atomic<Writer> writer{nullptr};
  std::atomic<bool> collector{false};
};
inline Installed& installed() {
  static Installed i;
  return i;
}
}  // namespace detail

// `collector`: the writer hands events to a program (the journal, a JSON
// reader) rather than to a person at a terminal; see to_collector().
inline void install(Writer w, bool collector) {
  detail::installed().collector = collector;
  detail::installed().writer = w;
}

// The console lines of `run` and `agent` (what they do, as it happens) are
// for a person on stdout; when a collector takes the log they go to it as
// events with their fields instead, or it would get them twice or without
// the fields that make them searchable.
inline bool to_collector() { return detail::installed().collector; }

inline const char* name(Level l) {
  switch (l) {
    case Level::trace: return "trace";
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}

inline void write(Level l, const Fields& f, std::string_view message) {
  if (Writer w = detail::installed().writer) return w(l, f, message);
  std::string line = std::string(name(l)) + " " + std::string(message);
  // One event, one line.
  for (char& c : line)
    if (c == '\n' || c == '\r') c = ' ';
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), stderr);
}

inline void info(const Fields& f, std::string_view message) { write(Level::info, f, message); }
inline void warn(const Fields& f, std::string_view message) { write(Level::warn, f, message); }
inline void error(const Fields& f, std::string_view message) { write(Level::error, f, message); }

// A console line says how bad it is in its first word ("error: the store did
// not record ..."); the rest are news.
inline Level level_of_line(std::string_view line) {
  if (line.rfind("error:", 0) == 0) return Level::error;
  if (line.rfind("warning:", 0) == 0) return Level::warn;
  return Level::info;
}

// A console line: `prefix` and `text` on stdout for a person, or, when a
// collector takes the log, `text` as an event with its fields, at `level`
// (by default the one its first word says).
inline void console(std::string_view prefix, std::string_view text, const Fields& f = {},
                    std::optional<Level> level = std::nullopt) {
  if (to_collector()) return write(level.value_or(level_of_line(text)), f, text);
  std::string line = std::string(prefix) + std::string(text) + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

}  // namespace memlend::log
