// The store's insides, shared by its source files (open, writer, reads).
#pragma once

#include "persistence/file_lock.hpp"
#include "persistence/sqlite.hpp"
#include "persistence/store.hpp"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

namespace memlend::store {

// Every statement the store runs, prepared once at open.
enum class Sql {
  begin, commit, rollback, savepoint, release, rollback_to,
  host_name, host_upsert, vm_name, vm_upsert,
  lease_get, lease_insert, lease_update,
  mirror_upsert, recommendation_upsert, recommendation_delete,
  event_insert, scenario_set, controller_advance,
  // retention (retention.cpp)
  events_bounds, events_first_recent, retention_mark, events_drop,
  // reads
  read_begin, read_end,
  load_controller, load_last_seq, load_hosts, load_vms, load_leases, load_mirrors, load_recommendations,
  load_events, events_newest_first, vm_known, vm_names, decisions_of_vm,
  view_hosts, view_vms, view_leases, view_mirrors, view_recommendations, view_recent_events, view_controller,
  view_vm_decisions,
  count_
};

// A consistent copy of the open database at `name`, which must not exist;
// why not, or nothing (open.cpp).
Expected<void> write_copy(sqlite3* db, const std::string& name);

struct Store::Impl {
  std::string path;
  Options options;
  int schema_version = 0;
  FileLock lock;

  // The connection and its statements: one thread at a time.
  mutable std::mutex db_mutex;
  sql::Connection db;
  std::vector<sql::Statement> stmts;
  std::set<std::pair<std::string, std::string>> lease_steps;  // from lease_transitions

  struct Unit {
    std::uint64_t ticket = 0;
    Batch batch;
    OnDurable done;
  };
  std::mutex queue_mutex;
  std::condition_variable queue_cv;  // work for the writer
  std::condition_variable done_cv;   // outcomes for flush()
  std::deque<Unit> queue;
  std::uint64_t next_ticket = 1;
  std::uint64_t done_through = 0;
  bool stopping = false;
  std::string broken;  // why the store stopped writing; empty while it works
  Stats stats;
  std::thread writer;

  ~Impl();
  const sql::Statement& stmt(Sql s) const { return stmts[static_cast<std::size_t>(s)]; }
  // A statement of a later schema than the file's (a read-only look at a file
  // the controller has not migrated yet) is not prepared.
  bool has(Sql s) const { return stmt(s).get() != nullptr; }
  bool writable() const { return options.access == Access::read_write; }

  // open.cpp
  Expected<void> prepare_statements();
  // writer.cpp
  void run_writer();
  std::vector<Outcome> write_group(std::vector<Unit>& units);
  void stop_writer();
  // retention.cpp: one bounded pass; the number of events dropped.
  Expected<std::uint64_t> drop_old_events(std::int64_t now_unix_ms);
};

// The one line for an SQLite failure on `path`: what is wrong and what to do.
std::string failure_message(const std::string& path, int rc, const std::string& detail);
// Process-wide log (log.cpp).
void log(LogLevel level, const std::string& message);
void install_sqlite_log();
std::int64_t unix_ms_now();

}  // namespace memlend::store
