#include "persistence/store_impl.hpp"

#include <atomic>
#include <chrono>
#include <iostream>
#include <mutex>
#include <set>

namespace memlend::store {

namespace {

std::mutex sink_mutex;
// Set before SQLite logs anything (route_once), read from any thread after.
std::atomic<bool> node_in_process{false};
LogSink& sink() {
  static LogSink s;
  return s;
}

// SQLite calls this from whichever thread hit the condition.
void from_sqlite(void*, int rc, const char* message) {
  int primary = rc & 0xff;
  // Refused batches are reported to their callers as outcomes; SQLITE_SCHEMA
  // is SQLite re-preparing a statement by itself. Neither is news for the log.
  // An automatic index is SQLite's note about a view's plan, made on every prepare.
  if (primary == SQLITE_CONSTRAINT || primary == SQLITE_SCHEMA || rc == SQLITE_WARNING_AUTOINDEX) return;
  // A killed controller's WAL is replayed by each connection that opens the
  // file first (the read-only check, then the writer): news once, not twice.
  if (rc == SQLITE_NOTICE_RECOVER_WAL) {
    // A dqlite node's SQLite replays the replicated WAL in its own VFS at
    // every transaction a follower applies: routine there, a line each.
    if (node_in_process) return;
    static std::mutex m;
    static std::set<std::string> said;
    std::lock_guard<std::mutex> g(m);
    if (!said.insert(message ? message : "").second) return;
  }
  LogLevel level = primary == SQLITE_NOTICE ? LogLevel::notice
                   : primary == SQLITE_WARNING ? LogLevel::warning
                                               : LogLevel::error;
  log(level, "sqlite: " + std::string(message ? message : "") + " (" + std::string(sql::code_name(rc)) + ")");
}

}  // namespace

void set_log_sink(LogSink s) {
  std::lock_guard<std::mutex> g(sink_mutex);
  sink() = std::move(s);
}

void log(LogLevel level, const std::string& message) {
  LogSink s;
  {
    std::lock_guard<std::mutex> g(sink_mutex);
    s = sink();
  }
  if (s) return s(level, message);
  const char* tag = level == LogLevel::error ? "error: " : level == LogLevel::warning ? "warning: " : "";
  std::cerr << "memlend: store: " << tag << message << '\n';
}

namespace {

std::once_flag routed;

void route_once(bool dqlite_node) {
  // sqlite3_config must come before SQLite initialises itself, once per process.
  std::call_once(routed, [dqlite_node] {
    node_in_process = dqlite_node;
    if (sqlite3_config(SQLITE_CONFIG_LOG, from_sqlite, nullptr) != SQLITE_OK)
      log(LogLevel::warning, "SQLite was initialised before the store: its own log is not routed here");
    // Memory statistics take a global mutex on every allocation; nothing reads them.
    if (!dqlite_node) sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  });
}

}  // namespace

void install_sqlite_log() { route_once(false); }

// A dqlite node in the process: SQLite's memory statistics stay as dqlite
// expects them (its leader crashed in its VFS without them).
void route_sqlite_log() { route_once(true); }

std::int64_t unix_ms_now() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace memlend::store
