// The controller's durable state: one SQLite file in WAL mode, written by
// one thread that commits many callers' batches per fsync, and read back in
// one call at start.
//
// Write-ahead: a caller describes a transition as a Batch, submits it, and
// acts on it only once it is told the batch is durable. A batch is atomic:
// all of it is durable, or none of it is (a refused batch leaves no trace,
// and other callers' batches in the same group commit are unaffected).
//
// Plain C++ (no CAF): actors call submit() from their own thread and get the
// outcome on the store's writer thread, where the callback should only hand
// it on (a message to the actor), never block.
#pragma once

#include "core/expected.hpp"
#include "persistence/records.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace memlend::replica {
class Tls;
}

namespace memlend::store {

struct Migration;

// One atomic change, made at scenario time t_s: rows to write and events to
// append. The stored clock moves forward to t_s (never back), so a restarted
// controller resumes at the time of the last durable batch.
class Batch {
 public:
  struct DropRecommendation {
    std::uint32_t vm = 0;
  };
  struct SetScenario {
    std::string fingerprint;
  };
  struct SetEpoch {
    std::uint64_t epoch = 0;
  };
  using Op = std::variant<HostRecord, VmRecord, LeaseRecord, MirrorRecord, RecommendationRecord,
                          DropRecommendation, EventRecord, SetScenario, SetEpoch>;

  explicit Batch(double t_s) : t_s_(t_s) {}

  Batch& put(HostRecord r) { return add(std::move(r)); }
  Batch& put(VmRecord r) { return add(std::move(r)); }
  // Inserts or moves a lease one step along `lease_transitions`; a step that
  // is not there (active → reserving, anything after released) is refused.
  Batch& put(LeaseRecord r) { return add(std::move(r)); }
  Batch& put(MirrorRecord r) { return add(std::move(r)); }
  Batch& put(RecommendationRecord r) { return add(std::move(r)); }
  Batch& drop_recommendation(std::uint32_t vm) { return add(DropRecommendation{vm}); }
  // Appends to the event log; the store numbers it.
  Batch& event(EventRecord e) { return add(std::move(e)); }
  // What the controller runs (a digest of the scenario), kept for recovery.
  Batch& scenario(std::string fingerprint) { return add(SetScenario{std::move(fingerprint)}); }
  // The leadership epoch; refused unless above the stored one.
  Batch& epoch(std::uint64_t e) { return add(SetEpoch{e}); }

  double t_s() const { return t_s_; }
  const std::vector<Op>& ops() const { return ops_; }
  bool empty() const { return ops_.empty(); }

 private:
  Batch& add(Op op) {
    ops_.push_back(std::move(op));
    return *this;
  }
  double t_s_;
  std::vector<Op> ops_;
};

enum class Status {
  durable,  // on disk (fsync'd): act on it
  refused,  // this batch broke a rule (a lease step, a reference): nothing of it was written
  failed,   // the file could not be written (disk full, I/O error): nothing of it was written
};

struct Outcome {
  std::uint64_t ticket = 0;
  Status status = Status::durable;
  std::string error;                      // refused/failed: "<file>: what is wrong and what to do"
  std::vector<std::uint64_t> event_seqs;  // durable: the sequence numbers of its events, in order
  bool ok() const { return status == Status::durable; }
};

// Called once per submitted batch, on the store's writer thread.
using OnDurable = std::function<void(const Outcome&)>;

enum class Access {
  read_write,  // the controller: exclusive lock, migrations, writer thread
  read_only,   // support tooling: never writes, no lock, works while the controller runs
};

struct Options {
  Access access = Access::read_write;
  std::chrono::milliseconds busy_timeout{5000};
  // Batches per group commit at most (one transaction, one fsync).
  std::size_t max_group = 4096;
  // Called on the writer thread after each group commit with how long it took
  // (write and fsync); the controller feeds its commit-latency histogram.
  std::function<void(double seconds)> on_commit;
  // Tests only: the migrations to know instead of the built-in ones.
  const std::vector<Migration>* migrations = nullptr;
  // Event retention: the writer drops the oldest events once they are older
  // than keep_days or beyond the newest keep_rows (0: no limit of that kind),
  // at most drop_batch in one transaction, a pass every drop_every (and at
  // once again while a pass finds a full batch). The newest event is always
  // kept, so numbering goes on from it.
  std::uint32_t events_keep_days = 30;
  std::uint64_t events_keep_rows = 1000000;
  std::size_t events_drop_batch = 5000;
  std::chrono::milliseconds events_drop_every{60000};
};

// Where a replicated store is: members of its dqlite cluster (host:port, any
// of them: the leader is found through whichever answers) and the database.
struct Replica {
  std::vector<std::string> members;
  // The cluster's TLS, which its members speak (replica/tls.hpp); null:
  // plain TCP, as only tests of the engine run it.
  std::shared_ptr<const replica::Tls> tls;
  std::string database = "memlend";
  // How long to look for a leader (an election may be under way) and to wait
  // for each answer.
  std::chrono::milliseconds find_leader{10000};
  std::chrono::milliseconds timeout{5000};
  // The upgrade from one node to a cluster: a single-node store (the file
  // `memlend run --db` keeps) to import when no controller has written to
  // the cluster's store yet. The file is opened as a controller opens it
  // (checked, migrated, locked), its rows are copied, and it is renamed
  // FILE.imported; a file that cannot be is refused (invalid_input) with
  // nothing imported. A store a controller wrote to leaves the file alone,
  // and a notice says so. Empty, or no such file: nothing to import.
  std::string import_file;
};

// Everything the controller needs to rebuild itself after a restart.
struct Snapshot {
  int schema_version = 0;
  double clock_s = 0;         // scenario time of the last durable batch
  std::string scenario;       // what Batch::scenario recorded
  std::uint64_t next_lease_id = 1;   // larger than any lease id ever stored
  std::uint64_t last_event_seq = 0;  // 0: no events yet
  std::uint64_t epoch = 0;           // the leadership epoch (0: none raised yet)
  std::vector<HostRecord> hosts;     // by id
  std::vector<VmRecord> vms;         // by id
  std::vector<LeaseRecord> leases;   // every lease not released, by id
  std::vector<MirrorRecord> mirrors; // every mirror not deleted, by VM
  std::vector<RecommendationRecord> recommendations;  // by VM

  bool fresh() const { return hosts.empty() && vms.empty() && leases.empty() && last_event_seq == 0; }
  std::vector<LeaseRecord> leases_in(LeaseState s) const;
};

// One support view as rows of values, for `memlend state`.
using Value = std::variant<std::monostate, std::int64_t, double, std::string>;
struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<Value>> rows;
};
enum class View { hosts, vms, leases, mirrors, recommendations, recent_events, controller, vm_decisions };
// The SQL name of a view (v_host_lending, ...).
std::string_view view_name(View v);

struct Stats {
  std::uint64_t batches = 0;  // durable batches
  std::uint64_t commits = 0;  // group commits (one fsync each)
  std::uint64_t refused = 0;
  std::uint64_t failed = 0;
};

class Store {
 public:
  // Opens (or creates) the database: checks it is memlend's and intact,
  // migrates it forward, takes the exclusive lock. Every error names the
  // file and says what to do; a file that is refused is left as it was.
  static Expected<std::unique_ptr<Store>> open(const std::string& path, const Options& options = {});
  // Opens the store kept by a dqlite cluster (replica/), found through any
  // of its members: the same store, its statements run by the cluster's
  // leader, each batch durable once a quorum holds it. A new database gets
  // memlend's schema; an older one is migrated in one transaction.
  static Expected<std::unique_ptr<Store>> open_replicated(const Replica& where, const Options& options = {});
  // Commits everything submitted, then closes.
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Queues a batch for the next group commit; `done` gets the outcome. An
  // error here (the store is closed, read-only or broken, the batch is
  // malformed) means the batch was not queued and `done` is not called.
  Expected<std::uint64_t> submit(Batch batch, OnDurable done);
  // Submits and waits until durable: for start-up and tests.
  Outcome commit(Batch batch);
  // Waits until everything submitted so far has its outcome.
  void flush();

  // Recovery: the whole state in one read.
  Expected<Snapshot> load() const;
  // Rows of one support view.
  Expected<Table> read(View v) const;
  // Event log entries with seq > after, in order (at most `limit`).
  Expected<std::vector<EventRecord>> events(std::uint64_t after = 0, std::size_t limit = SIZE_MAX) const;
  // The events recorded at or after `since_unix_ms` (wall clock), oldest
  // first, the newest `limit` of them at most, with the columns of
  // v_recent_events and their reason (null before schema version 4). Read
  // back from the newest: the first older event ends it, so a clock that
  // stepped back hides what came before the step.
  Expected<Table> events_since(std::int64_t since_unix_ms, std::size_t limit) const;
  // The VM's decisions (v_decisions rows), newest first, at most `limit`; an
  // error names a VM the store does not know, or a file without reasons.
  Expected<Table> decisions(const std::string& vm, std::size_t limit) const;
  // One retention pass now, as the writer makes them (Options::events_keep_*);
  // how many events it dropped. Judges age against `now_unix_ms`.
  Expected<std::uint64_t> drop_old_events(std::int64_t now_unix_ms);

  // A plain SQLite file at `file` (which must not exist) holding what the
  // store holds now, its views included, that sqlite3 opens as it is.
  Expected<void> export_to(const std::string& file) const;

  const std::string& path() const;
  int schema_version() const;
  Stats stats() const;
  // Whether it still records: false once a failure stopped its writer (a
  // broken file, or a replicated store's lost connection to its leader).
  bool recording() const;

  struct Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Where SQLite's own error log and the store's notices go (by default, a
// line on stderr). Process-wide; set it before the first open.
enum class LogLevel { notice, warning, error };
using LogSink = std::function<void(LogLevel, const std::string&)>;
void set_log_sink(LogSink sink);
// Routes SQLite's own error log to the sink. The store does it when it first
// opens; a process whose other parts start SQLite first (an embedded dqlite
// node) calls it before them, or SQLite's log goes nowhere.
void route_sqlite_log();

// The default database of `memlend run` and `memlend state`.
inline constexpr const char* default_db_path = "memlend.db";

}  // namespace memlend::store
