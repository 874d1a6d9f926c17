// The store's insides, shared by its source files (open, writer, reads).
#pragma once

#include "persistence/file_lock.hpp"
#include "persistence/schema.hpp"
#include "persistence/sqlite.hpp"
#include "persistence/store.hpp"
#include "replica/client.hpp"

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
  event_insert, scenario_set, controller_advance, epoch_set,
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

struct StatementText {
  Sql id;
  const char* sql;
  bool write;
  int since = 1;  // the first schema version it runs on; a later entry for the same id takes over
};
// Every statement the store runs (statements.cpp).
const std::vector<StatementText>& statement_texts();
// The SQL that takes a database from schema version `from` to the newest of
// `migrations` (`to`): run in one transaction, it bumps the version too.
std::string migration_script(const std::vector<Migration>& migrations, std::int64_t from, std::int64_t& to);
std::string quoted(const std::string& text);

// The same for a replicated store (replicated.cpp): a new local file with
// memlend's schema and the rows of every table, read in one transaction.
Expected<void> export_replicated(const Store::Impl& im, const std::string& name);

// The replicated store's first column of the first row of a query, as an
// integer (0 without a row); and a migration script run statement by
// statement in the caller's transaction (replicated.cpp).
Expected<std::int64_t> scalar(replica::Client& c, const std::string& name, const std::string& text);
Expected<void> run_script(replica::Client& c, const std::string& script);

// Whether a controller has written to the replicated store: its controller
// row, which every durable batch updates, is no longer as the migrations
// left it (import.cpp). A store no controller wrote to holds no state.
Expected<bool> written_to(replica::Client& c, const std::string& name);
// Before a controller starts on the replicated store (at its schema, its
// foreign keys off): imports the single-node store at `file` when the store
// is unwritten and the file exists, or says why not; clears what an import
// that did not finish left (import.cpp).
Expected<void> take_over(Store::Impl& im, replica::Client& c, const std::string& file);

// A consistent copy of the open database at `name`, which must not exist;
// why not, or nothing (open.cpp).
Expected<void> write_copy(sqlite3* db, const std::string& name);

// A store kept by a dqlite cluster (Store::open_replicated): a client of its
// leader, to which each statement's text goes with its parameters.
struct Replicated {
  std::vector<std::string> members;  // host:port of any members, to find the leader through
  std::string database;
  std::optional<replica::Client> client;
  std::vector<std::string> texts;  // by Sql; empty: not on this schema version
  std::string error;               // of the last statement that failed
  std::int64_t last_insert_id = 0;
};

struct Store::Impl {
  std::string path;  // the file, or how a replicated store is named in messages
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
  std::unique_ptr<Replicated> replicated;  // set: the store is a dqlite cluster's, not a file

  const sql::Statement& stmt(Sql s) const { return stmts[static_cast<std::size_t>(s)]; }
  // A statement of a later schema than the file's (a read-only look at a file
  // the controller has not migrated yet) is not prepared.
  bool has(Sql s) const {
    if (replicated) return !replicated->texts[static_cast<std::size_t>(s)].empty();
    return stmt(s).get() != nullptr;
  }
  // The engine's words for the last failure.
  std::string error() const { return replicated ? replicated->error : db.error(); }
  std::int64_t last_insert_id() const {
    return replicated ? replicated->last_insert_id : sqlite3_last_insert_rowid(db.get());
  }
  // Ends a transaction a failure left open.
  void roll_back() const;
  bool writable() const { return options.access == Access::read_write; }

  // open.cpp
  Expected<void> prepare_statements();
  void start_writer();
  // writer.cpp
  void run_writer();
  std::vector<Outcome> write_group(std::vector<Unit>& units);
  void stop_writer();
  // retention.cpp: one bounded pass; the number of events dropped.
  Expected<std::uint64_t> drop_old_events(std::int64_t now_unix_ms);
};

// One use of one of the store's statements (as sql::Cursor), on whichever
// engine keeps the store: the statement prepared at open on the local file,
// or its text sent to the replicated store's leader, whose rows come back
// whole (a statement that returns rows is one that starts with SELECT).
class Cursor {
 public:
  Cursor(const Store::Impl& im, Sql s);
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;

  Cursor& bind(std::int64_t v);
  Cursor& bind(std::uint64_t v) { return bind(static_cast<std::int64_t>(v)); }
  Cursor& bind(std::uint32_t v) { return bind(static_cast<std::int64_t>(v)); }
  Cursor& bind(int v) { return bind(static_cast<std::int64_t>(v)); }
  Cursor& bind(bool v) { return bind(static_cast<std::int64_t>(v ? 1 : 0)); }
  Cursor& bind(double v);
  // As sql::Cursor: text is bound without a copy on a local file, so it must
  // outlive the step.
  Cursor& bind(std::string_view v);
  Cursor& bind(const std::string& v) { return bind(std::string_view(v)); }
  Cursor& bind(const char* v) { return bind(std::string_view(v)); }
  Cursor& bind(std::string&&) = delete;
  Cursor& bind_null();
  template <class T>
  Cursor& bind(const std::optional<T>& v) {
    return v ? bind(*v) : bind_null();
  }

  // SQLITE_ROW, SQLITE_DONE, or an error code (the engine's words: Impl::error()).
  int step();

  bool is_null(int col) const { return type(col) == SQLITE_NULL; }
  std::int64_t int64(int col) const;
  double real(int col) const;
  std::string text(int col) const;
  int type(int col) const;
  int columns();
  std::string column_name(int col);

 private:
  const replica::Value& at(int col) const;
  int run();

  const Store::Impl& im_;
  Sql sql_;
  std::optional<sql::Cursor> local_;
  std::vector<replica::Value> params_;
  replica::Rows rows_;
  int ran_ = -1;               // the remote statement's result code, once run
  std::size_t next_ = 0;       // the remote row step() shows next
};

// The one line for an SQLite failure on `path`: what is wrong and what to do.
std::string failure_message(const std::string& path, int rc, const std::string& detail);
// Process-wide log (log.cpp).
void log(LogLevel level, const std::string& message);
void install_sqlite_log();
std::int64_t unix_ms_now();

}  // namespace memlend::store
