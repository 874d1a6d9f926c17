// The upgrade from one node to a cluster: a single-node store (the file of
// `memlend run --db`) imported into a replicated store that no controller
// has written to yet, before the first controller starts on it.
//
// One transaction would be simplest, but dqlite replicates a transaction as
// one Raft entry at its commit, and a million events (the retention default)
// make an entry of ~100 MiB that took longer to replicate than an election
// timeout of 300 ms: the leader lost its leadership at COMMIT. So the rows
// go in transactions of a few MiB, and what marks the import done is the
// controller row: it stays as the migrations left it (never written) until
// the last transaction, which writes it with the small tables. A store whose
// controller row was never written holds no controller's state, whatever
// else it holds: an import that stopped halfway is cleared before anything
// starts on it (read-only openers call it empty), and a restarted import
// starts over.
#include "core/hex.hpp"
#include "persistence/store_impl.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <sys/stat.h>
#include <unistd.h>

namespace memlend::store {

namespace {

// The tables that grow with time (the event log, every lease ever granted)
// are copied in transactions of their own before the last one; every other
// table goes in the last, with the controller row.
bool grows(const std::string& table) { return table == "events" || table == "leases"; }

// A statement's parameters are at most 255 (the wire protocol counts them
// in a byte); the statement and the transaction are bounded in bytes, so
// that no Raft entry is large (a few MiB commit in well under an election).
constexpr std::size_t most_params = 255;
constexpr std::size_t rows_per_statement = 250;
constexpr std::size_t statement_bytes = std::size_t{256} << 10;
constexpr std::size_t transaction_bytes = std::size_t{4} << 20;

std::string quoted_name(const std::string& name) { return "\"" + name + "\""; }

// One column of the row as SQL: integers, text and blobs as literals, which
// are exact; a real as a parameter, since SQLite's reading of a decimal may
// miss a double by its last bit.
void append_value(std::string& sql, std::vector<replica::Value>& params, sqlite3_stmt* st, int col) {
  switch (sqlite3_column_type(st, col)) {
    case SQLITE_INTEGER:
      sql += std::to_string(sqlite3_column_int64(st, col));
      return;
    case SQLITE_FLOAT:
      sql += '?';
      params.emplace_back(sqlite3_column_double(st, col));
      return;
    case SQLITE_TEXT: {
      std::string text(reinterpret_cast<const char*>(sqlite3_column_text(st, col)),
                       static_cast<std::size_t>(sqlite3_column_bytes(st, col)));
      // The protocol's text ends at a NUL: such text goes as bytes.
      if (text.find('\0') == std::string::npos)
        sql += quoted(text);
      else
        sql += "CAST(X'" + to_hex(text.data(), text.size()) + "' AS TEXT)";
      return;
    }
    case SQLITE_BLOB: {
      // SQLite's order: the blob first, then its size.
      const void* blob = sqlite3_column_blob(st, col);
      sql += "X'" + to_hex(blob, static_cast<std::size_t>(sqlite3_column_bytes(st, col))) + "'";
      return;
    }
    default:
      sql += "NULL";
  }
}

// The file's side: a read-only connection beside the store that holds its
// lock, in one read transaction, so that every table is read as of one moment.
class Source {
 public:
  explicit Source(const std::string& file) : file_(file) {
    sqlite3* raw = nullptr;
    rc_ = sqlite3_open_v2(file.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
    db_ = sql::Connection(raw);
    if (rc_ == SQLITE_OK) rc_ = sql::exec(raw, "BEGIN");
  }
  ~Source() {
    if (db_) sql::exec(db_.get(), "COMMIT");
  }
  Error failed() const { return Error{failure_message(file_, rc_, db_.error())}; }
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3* get() const { return db_.get(); }

  Expected<std::vector<std::string>> tables() {
    sql::Statement st;
    rc_ = st.prepare(db_.get(), "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                                "ORDER BY name");
    if (rc_ != SQLITE_OK) return failed();
    std::vector<std::string> out;
    sql::Cursor c(st);
    while ((rc_ = c.step()) == SQLITE_ROW) out.push_back(c.text(0));
    if (rc_ != SQLITE_DONE) return failed();
    rc_ = SQLITE_OK;
    return out;
  }

 private:
  std::string file_;
  sql::Connection db_;
  int rc_ = SQLITE_OK;
};

// The cluster's side: statements of many rows each, in transactions of a
// bounded size (`chunked`), or all in the caller's transaction.
class Copy {
 public:
  explicit Copy(replica::Client& c) : c_(c) {}

  // Every row of `table`, after the cluster's own rows of it are gone; the
  // number of rows.
  Expected<std::uint64_t> table(Source& from, const std::string& table, bool chunked) {
    sql::Statement st;
    if (st.prepare(from.get(), "SELECT * FROM " + quoted_name(table)) != SQLITE_OK)
      return Error{table + ": " + sql::Connection::describe(from.get())};
    sqlite3_stmt* s = st.get();
    const int columns = sqlite3_column_count(s);
    std::string head = "INSERT INTO " + quoted_name(table) + " (";
    for (int i = 0; i < columns; ++i) head += (i ? ", " : "") + quoted_name(sqlite3_column_name(s, i));
    head += ") VALUES ";
    if (chunked)
      if (auto b = begin(); !b) return b.error();
    if (auto gone = run("DELETE FROM " + quoted_name(table)); !gone) return gone.error();
    std::uint64_t rows = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      if (rows_ == 0) sql_ = head;
      sql_ += rows_ ? ",(" : "(";
      for (int i = 0; i < columns; ++i) {
        if (i) sql_ += ',';
        append_value(sql_, params_, s, i);
      }
      sql_ += ')';
      ++rows_;
      ++rows;
      if (rows_ >= rows_per_statement || sql_.size() >= statement_bytes || params_.size() + columns > most_params)
        if (auto sent = flush(); !sent) return sent.error();
      if (chunked && sent_ >= transaction_bytes) {
        if (auto c = commit(); !c) return c.error();
        if (auto b = begin(); !b) return b.error();
      }
    }
    if (rc != SQLITE_DONE) return Error{table + ": " + sql::Connection::describe(from.get())};
    if (auto sent = flush(); !sent) return sent.error();
    if (chunked)
      if (auto c = commit(); !c) return c.error();
    return rows;
  }

  Expected<void> run(const std::string& text) {
    auto r = c_.exec(text);
    if (!r) return r.error();
    return {};
  }
  Expected<void> begin() {
    sent_ = 0;
    return run("BEGIN IMMEDIATE");
  }
  Expected<void> commit() { return run("COMMIT"); }

 private:
  Expected<void> flush() {
    if (rows_ == 0) return {};
    auto r = c_.exec(sql_, params_);
    sent_ += sql_.size();
    rows_ = 0;
    sql_.clear();
    params_.clear();
    if (!r) return r.error();
    return {};
  }

  replica::Client& c_;
  std::string sql_;
  std::vector<replica::Value> params_;
  std::size_t rows_ = 0;  // in sql_
  std::size_t sent_ = 0;  // bytes of SQL in this transaction
};

// The store as the migrations make it, in one transaction: every object
// dropped (secure_delete off, or each freed page of a large table would be
// rewritten, in one Raft entry) and the schema made again.
Expected<void> clear(Store::Impl& im, replica::Client& c) {
  const auto& migrations = im.options.migrations ? *im.options.migrations : builtin_migrations();
  std::int64_t to = 0;
  std::string script = migration_script(migrations, 0, to);
  auto failed = [&](const Error& e) {
    if (!c.spent()) (void)c.exec("ROLLBACK");
    return Error{im.path + ": cannot clear what an import that did not finish left (" + e.message + ")", e.code};
  };
  if (auto b = c.exec("BEGIN IMMEDIATE"); !b) return failed(b.error());
  auto objects = c.query("SELECT type, name FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' "
                         "AND type IN ('table', 'view') ORDER BY type = 'table'");
  if (!objects) return failed(objects.error());
  if (auto off = c.query("PRAGMA secure_delete = 0"); !off) return failed(off.error());
  for (const auto& row : objects->rows) {
    const auto* type = std::get_if<std::string>(&row[0]);
    const auto* name = std::get_if<std::string>(&row[1]);
    if (!type || !name) return failed(Error{"sqlite_schema: a row that is not two names", ErrorCode::failed});
    std::string drop = (*type == "view" ? "DROP VIEW " : "DROP TABLE ") + quoted_name(*name);
    if (auto d = c.exec(drop); !d) return failed(d.error());
  }
  if (auto made = run_script(c, script); !made) return failed(made.error());
  if (auto done = c.exec("COMMIT"); !done) return failed(done.error());
  return {};
}

// An import that stopped halfway left rows in the tables that are copied
// first; nothing else ever puts rows there while the controller row is unwritten.
Expected<bool> left_over(const Store::Impl& im, replica::Client& c) {
  auto rows = scalar(c, im.path, "SELECT EXISTS (SELECT 1 FROM events) OR EXISTS (SELECT 1 FROM leases)");
  if (!rows) return rows.error();
  return *rows != 0;
}

// Copies every row of the file: the tables that grow in transactions of
// their own, then the rest and the controller row in the last one, which
// alone makes the store one a controller wrote to. The file was checked
// (integrity, references) when it was opened; the copy is row for row.
Expected<void> copy_rows(Store::Impl& im, replica::Client& c, const std::string& file, bool leftovers,
                         std::map<std::string, std::uint64_t>& rows) {
  Source from(file);
  if (!from.ok()) return Error{from.failed().message + "; nothing was imported", ErrorCode::invalid_input};
  auto tables = from.tables();
  if (!tables) return Error{tables.error().message + "; nothing was imported", ErrorCode::invalid_input};
  if (leftovers)
    if (auto cleared = clear(im, c); !cleared) return cleared.error();
  Copy copy(c);
  bool committing = false;
  auto failed = [&](const Error& e) {
    if (!c.spent()) (void)c.exec("ROLLBACK");
    // A COMMIT whose answer was lost may have reached a quorum.
    std::string next = committing && c.spent()
                           ? "whether the import was recorded is known once a leader is found: the next start "
                             "finds it there, or imports the file again"
                           : "the store holds no controller's state yet, and the next start imports the file again";
    return Error{file + ": cannot import it into the " + im.path + " (" + e.message + "); " + next, e.code};
  };
  for (const auto& t : *tables) {
    if (!grows(t)) continue;
    auto n = copy.table(from, t, true);
    if (!n) return failed(n.error());
    rows[t] = *n;
  }
  if (auto b = copy.begin(); !b) return failed(b.error());
  auto still = written_to(c, im.path);
  if (!still) return failed(still.error());
  if (*still) return failed(Error{"a controller wrote to the store meanwhile"});
  for (const auto& t : *tables) {
    if (grows(t)) continue;
    auto n = copy.table(from, t, false);
    if (!n) return failed(n.error());
    rows[t] = *n;
  }
  // A file no controller wrote to is imported as written, by the import.
  if (auto w = copy.run("UPDATE controller SET updated_unix_ms = " + std::to_string(unix_ms_now()) +
                        " WHERE id = 1 AND updated_unix_ms = 0");
      !w)
    return failed(w.error());
  committing = true;
  if (auto done = copy.commit(); !done) return failed(done.error());
  return {};
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// FILE.imported, or FILE.imported-<unix seconds> when that is taken; never
// over a file. The name it has now, or why not.
Expected<std::string> set_aside(const std::string& file) {
  std::string aside = file + ".imported";
  if (exists(aside)) aside += "-" + std::to_string(unix_ms_now() / 1000);
  // The lock keeps a controller from starting on the file while it moves.
  auto lock = FileLock::acquire(file);
  if (!lock) return lock.error();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::string from = file + suffix;
    if (*suffix && !exists(from)) continue;
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, (aside + suffix).c_str(), RENAME_NOREPLACE) != 0)
      return Error{"cannot rename " + from + " to " + aside + suffix + " (" + std::strerror(errno) + ")"};
  }
  ::unlink(FileLock::lock_path(file).c_str());
  return aside;
}

std::string counted(const std::map<std::string, std::uint64_t>& rows, const char* table, const char* what) {
  auto it = rows.find(table);
  return std::to_string(it == rows.end() ? 0 : it->second) + " " + what;
}

}  // namespace

Expected<bool> written_to(replica::Client& c, const std::string& name) {
  auto written = scalar(c, name, "SELECT count(*) FROM controller WHERE id = 1 AND updated_unix_ms <> 0");
  if (!written) return written.error();
  return *written != 0;
}

Expected<void> take_over(Store::Impl& im, replica::Client& c, const std::string& file) {
  auto written = written_to(c, im.path);
  if (!written) return written.error();
  const bool offered = !file.empty() && exists(file);
  if (*written) {
    if (offered)
      log(LogLevel::notice, file + ": not imported: the " + im.path +
                                " already holds a controller's state, so the file was left as it is (read it with "
                                "`memlend state --db " + file + "`)");
    return {};
  }
  auto leftovers = left_over(im, c);
  if (!leftovers) return leftovers.error();
  if (!offered) {
    if (!*leftovers) return {};
    if (auto cleared = clear(im, c); !cleared) return cleared.error();
    log(LogLevel::notice, im.path + ": held an import of a single-node store that did not finish; it was cleared, "
                                    "and the controller starts on an empty store");
    return {};
  }

  // Migrated to this binary's schema and locked against a controller, as a
  // controller would open it; the lock holds until the rows are copied.
  auto refused = [&](const std::string& why) {
    return Error{why + "; nothing was imported into the " + im.path, ErrorCode::invalid_input};
  };
  Options fo;
  fo.migrations = im.options.migrations;
  fo.events_keep_days = 0;  // the file is read as it is, not trimmed
  fo.events_keep_rows = 0;
  auto single = Store::open(file, fo);
  if (!single) return refused(single.error().message);
  if ((*single)->schema_version() != im.schema_version)
    return refused(file + ": schema version " + std::to_string((*single)->schema_version()) + ", the " + im.path +
                   "'s is " + std::to_string(im.schema_version));
  std::map<std::string, std::uint64_t> rows;
  if (auto copied = copy_rows(im, c, file, *leftovers, rows); !copied) return copied.error();

  auto epoch = scalar(c, im.path, "SELECT epoch FROM controller WHERE id = 1");
  auto seq = scalar(c, im.path, "SELECT COALESCE(MAX(seq), 0) FROM events");
  std::string what = counted(rows, "hosts", "hosts") + ", " + counted(rows, "vms", "VMs") + ", " +
                     counted(rows, "leases", "leases") + ", " + counted(rows, "mirrors", "mirrors") + ", " +
                     counted(rows, "recommendations", "recommendations") + ", " +
                     counted(rows, "events", "events") + (seq && *seq ? " (through seq " + std::to_string(*seq) + ")" : "") +
                     (epoch ? ", leadership epoch " + std::to_string(*epoch) : "");
  single->reset();
  auto aside = set_aside(file);
  if (!aside) {
    log(LogLevel::warning, file + ": imported into the " + im.path + ": " + what + "; but " + aside.error().message +
                               ": it stays where it is, and is not imported again (the cluster holds a store now)");
    return {};
  }
  log(LogLevel::notice, file + ": imported into the " + im.path + ": " + what + "; the file is now " + *aside);
  return {};
}

}  // namespace memlend::store
