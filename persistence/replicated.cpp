// The store kept by a dqlite cluster: the same schema, statements and writer
// as on a local file, with the cluster's leader running the statements. A
// commit there is durable on a quorum of the cluster's voters (Raft), which
// is the store's write-ahead rule for a controller that may move between
// nodes.
#include "persistence/store_impl.hpp"

#include <algorithm>
#include <limits>

namespace memlend::store {

Expected<std::int64_t> scalar(replica::Client& c, const std::string& name, const std::string& text) {
  auto rows = c.query(text);
  if (!rows) return Error{name + ": " + text + ": " + rows.error().message, rows.error().code};
  if (rows->rows.empty() || rows->rows[0].empty()) return std::int64_t{0};
  if (const auto* i = std::get_if<std::int64_t>(&rows->rows[0][0])) return *i;
  return Error{name + ": " + text + ": not an integer", ErrorCode::failed};
}

namespace {

std::string listed(const std::vector<std::string>& members) {
  std::string out;
  for (const auto& m : members) out += (out.empty() ? "" : ", ") + m;
  return out;
}

// The schema version of the database, 0 when it is new; the same checks as
// on a file, but the integrity check: the leader's SQLite pages are Raft's,
// checked by the cluster itself.
Expected<std::int64_t> inspect(replica::Client& c, const std::string& name, int known, bool read_only) {
  auto objects = scalar(c, name, "SELECT count(*) FROM sqlite_schema");
  if (!objects) return objects.error();
  auto app = scalar(c, name, "PRAGMA application_id");
  if (!app) return app.error();
  auto version = scalar(c, name, "PRAGMA user_version");
  if (!version) return version.error();
  bool fresh = *objects == 0 && *app == 0 && *version == 0;
  if (fresh && read_only) return Error{name + ": empty: no controller has written to it yet", ErrorCode::invalid_input};
  if (fresh) return std::int64_t{0};
  if (*app != application_id)
    return Error{name + ": a database of another program, not memlend's; name memlend's database",
                 ErrorCode::invalid_input};
  if (*version > known)
    return Error{name + ": written by a newer memlend (schema version " + std::to_string(*version) +
                     "; this memlend knows versions up to " + std::to_string(known) +
                     "); run that memlend or a newer one",
                 ErrorCode::invalid_input};
  if (*version <= 0 || *objects == 0)
    return Error{name + ": memlend's application_id but no schema; the database is damaged", ErrorCode::failed};
  return *version;
}

// The script's statements one by one, as SQLite's tokenizer ends them, each
// without the comments and blanks before it.
std::vector<std::string> statements_of(const std::string& script) {
  std::vector<std::string> out;
  std::string piece;
  for (char ch : script) {
    piece += ch;
    if (ch != ';' || !sqlite3_complete(piece.c_str())) continue;
    std::size_t at = 0;
    for (;;) {
      at = piece.find_first_not_of(" \t\r\n", at);
      if (at == std::string::npos || piece.compare(at, 2, "--") != 0) break;
      at = piece.find('\n', at);
    }
    if (at != std::string::npos) out.push_back(piece.substr(at));
    piece.clear();
  }
  return out;
}

}  // namespace

// dqlite runs a statement that answers with a row (some PRAGMAs say the
// value they set) as a query only, and one that answers with none as an
// exec only: which is which, SQLite says of the statement prepared on an
// empty database (the migrations' other statements name tables it lacks).
Expected<void> run_script(replica::Client& c, const std::string& script) {
  sqlite3* empty = nullptr;
  sqlite3_open_v2(":memory:", &empty, SQLITE_OPEN_READWRITE, nullptr);
  sql::Connection blank(empty);
  auto answers = [&](const std::string& statement) {
    if (statement.compare(0, 6, "PRAGMA") != 0) return false;
    sql::Statement st;
    return st.prepare(blank.get(), statement) == SQLITE_OK && sqlite3_column_count(st.get()) > 0;
  };
  for (const auto& statement : statements_of(script)) {
    Expected<void> ran;
    if (answers(statement)) {
      if (auto r = c.query(statement); !r) ran = r.error();
    } else if (auto r = c.exec(statement); !r) {
      ran = r.error();
    }
    if (!ran) return Error{ran.error().message + " in \"" + statement.substr(0, 60) + "\"", ran.error().code};
  }
  return {};
}

namespace {

// Runs the script in one transaction, with the foreign keys checked before
// it commits: the database is at the newest version or as it was.
Expected<void> migrate(replica::Client& c, const std::string& name, const std::string& script, std::int64_t from,
                       std::int64_t to) {
  auto failed = [&](const Error& e) {
    if (!c.spent()) (void)c.exec("ROLLBACK");
    return Error{name + ": " + e.message + " (migrating from schema version " + std::to_string(from) + " to " +
                     std::to_string(to) + "); the database was left as it was",
                 e.code};
  };
  if (auto r = c.exec("BEGIN IMMEDIATE"); !r) return failed(r.error());
  if (auto ran = run_script(c, script); !ran) return failed(ran.error());
  auto dangling = c.query("PRAGMA foreign_key_check");
  if (!dangling) return failed(dangling.error());
  if (!dangling->rows.empty())
    return failed(Error{std::to_string(dangling->rows.size()) + " rows refer to rows that are not there",
                        ErrorCode::failed});
  if (auto r = c.exec("COMMIT"); !r) return failed(r.error());
  return {};
}

// Binds a value from the cluster to a local statement's parameter i.
int bind_value(sqlite3_stmt* st, int i, const replica::Value& v) {
  if (const auto* n = std::get_if<std::int64_t>(&v)) return sqlite3_bind_int64(st, i, *n);
  if (const auto* d = std::get_if<double>(&v)) return sqlite3_bind_double(st, i, *d);
  if (const auto* t = std::get_if<std::string>(&v))
    return sqlite3_bind_text(st, i, t->data(), static_cast<int>(t->size()), SQLITE_TRANSIENT);
  if (const auto* b = std::get_if<replica::Blob>(&v))
    return sqlite3_bind_blob(st, i, b->bytes.data(), static_cast<int>(b->bytes.size()), SQLITE_TRANSIENT);
  return sqlite3_bind_null(st, i);
}

// Copies one table's rows from the cluster into the same table of `out`,
// whose own rows (those its migrations wrote) go first.
// Read a page of rows at a time, by rowid (no table of memlend's is WITHOUT
// ROWID): a table of a million events is far more than the client takes in
// one answer (ClientOptions::max_result).
constexpr std::int64_t export_page_rows = 5000;

Expected<void> copy_table(replica::Client& c, sqlite3* out, const std::string& table) {
  std::string name = "\"" + table + "\"";
  if (sql::exec(out, ("DELETE FROM " + name).c_str()) != SQLITE_OK)
    return Error{table + ": " + sql::Connection::describe(out)};
  sql::Statement insert;
  std::int64_t after = std::numeric_limits<std::int64_t>::min();
  for (;;) {
    auto rows = c.query("SELECT rowid, * FROM " + name + " WHERE rowid > ? ORDER BY rowid LIMIT ?",
                        {replica::Value{after}, replica::Value{export_page_rows}});
    if (!rows) return Error{table + ": " + rows.error().message, rows.error().code};
    if (rows->rows.empty()) return {};
    if (!insert.get()) {
      std::string text = "INSERT INTO " + name + " (";
      std::string marks;
      for (std::size_t i = 1; i < rows->columns.size(); ++i) {
        text += (i > 1 ? ", \"" : "\"") + rows->columns[i] + "\"";
        marks += i > 1 ? ", ?" : "?";
      }
      text += ") VALUES (" + marks + ")";
      if (insert.prepare(out, text) != SQLITE_OK) return Error{table + ": " + sql::Connection::describe(out)};
    }
    for (const auto& row : rows->rows) {
      const auto* rowid = std::get_if<std::int64_t>(&row[0]);
      if (!rowid || *rowid <= after) return Error{table + ": a row without a rowid above the last", ErrorCode::failed};
      after = *rowid;
      sqlite3_stmt* st = insert.get();
      for (std::size_t i = 1; i < row.size(); ++i) bind_value(st, static_cast<int>(i), row[i]);
      int rc = sqlite3_step(st);
      sqlite3_reset(st);
      sqlite3_clear_bindings(st);
      if (rc != SQLITE_DONE) return Error{table + ": " + sql::Connection::describe(out)};
    }
    if (static_cast<std::int64_t>(rows->rows.size()) < export_page_rows) return {};
  }
}

}  // namespace

// Built in memory (memlend's schema at the cluster's version, then every
// table's rows, all read in one transaction) and written as a file copy is.
Expected<void> export_replicated(const Store::Impl& im, const std::string& name) {
  Replicated& r = *im.replicated;
  if (!r.client || r.client->spent()) return Error{im.path + ": no connection to its leader"};
  replica::Client& c = *r.client;
  std::vector<Migration> upto;
  for (const auto& m : builtin_migrations())
    if (m.to_version <= im.schema_version) upto.push_back(m);
  std::int64_t to = 0;
  std::string script = migration_script(upto, 0, to);
  sqlite3* mem = nullptr;
  if (sqlite3_open_v2(":memory:", &mem, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK) {
    sqlite3_close_v2(mem);
    return Error{im.path + ": cannot make the copy in memory"};
  }
  sql::Connection copy(mem);
  auto failed = [&](const std::string& why) {
    return Error{im.path + ": cannot export it to " + name + " (" + why + ")"};
  };
  if (sql::exec(mem, script.c_str()) != SQLITE_OK) return failed(copy.error());
  if (sql::exec(mem, "BEGIN") != SQLITE_OK) return failed(copy.error());
  if (auto b = c.exec("BEGIN DEFERRED"); !b) return failed(b.error().message);
  auto tables =
      c.query("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name");
  Expected<void> copied;
  if (!tables) copied = tables.error();
  for (std::size_t i = 0; tables && copied && i < tables->rows.size(); ++i)
    if (const auto* t = std::get_if<std::string>(&tables->rows[i][0])) copied = copy_table(c, mem, *t);
  if (!c.spent()) (void)c.exec("COMMIT");
  if (!copied) return failed(copied.error().message);
  if (sql::exec(mem, "COMMIT") != SQLITE_OK) return failed(copy.error());
  if (auto done = write_copy(mem, name); !done) return failed(done.error().message);
  return {};
}

Expected<std::unique_ptr<Store>> Store::open_replicated(const Replica& where, const Options& options) {
  install_sqlite_log();
  if (where.members.empty()) return Error{"replicated store: no member given", ErrorCode::invalid_input};
  if (where.database.empty()) return Error{"replicated store: no database named", ErrorCode::invalid_input};
  const auto& migrations = options.migrations ? *options.migrations : builtin_migrations();
  const int known = migrations.empty() ? 0 : migrations.back().to_version;
  const bool read_only = options.access == Access::read_only;

  auto impl = std::make_unique<Impl>();
  impl->path = "replicated store " + where.database;
  impl->options = options;
  impl->replicated = std::make_unique<Replicated>();
  Replicated& r = *impl->replicated;
  r.members = where.members;
  r.database = where.database;

  replica::ClientOptions limits;
  limits.timeout = where.timeout;
  limits.tls = where.tls;
  auto client = replica::connect_leader(where.members, where.database, where.find_leader, limits);
  if (!client)
    return Error{impl->path + ": no leader found through " + listed(where.members) + " (" + client.error().message +
                     ")",
                 client.error().code};
  r.client.emplace(std::move(*client));
  replica::Client& c = *r.client;

  auto version = inspect(c, impl->path, known, read_only);
  if (!version) return version.error();
  if (!read_only) {
    // dqlite 1.11.1 fails a transaction ("disk I/O error", a short read) that
    // spilled pages to a WAL a checkpoint had just emptied, reading them back
    // (fixed upstream later): a transaction larger than the page cache (an
    // import's, a large group commit) keeps its pages in memory until COMMIT.
    if (auto off = c.exec("PRAGMA cache_spill = OFF"); !off) return Error{impl->path + ": " + off.error().message};
    // Per connection, as on a file: the writer's references are checked.
    if (auto on = c.exec("PRAGMA foreign_keys = OFF"); !on) return Error{impl->path + ": " + on.error().message};
    std::int64_t to = *version;
    std::string script = migration_script(migrations, *version, to);
    if (to != *version) {
      if (auto done = migrate(c, impl->path, script, *version, to); !done) return done.error();
      if (*version > 0)
        log(LogLevel::notice, impl->path + ": migrated from schema version " + std::to_string(*version) + " to " +
                                  std::to_string(to));
      *version = to;
    }
    impl->schema_version = static_cast<int>(*version);
    if (auto ready = take_over(*impl, c, where.import_file); !ready) return ready.error();
    if (auto on = c.exec("PRAGMA foreign_keys = ON"); !on) return Error{impl->path + ": " + on.error().message};
  } else {
    // An import under way (or one that stopped halfway) is no state yet.
    auto written = written_to(c, impl->path);
    if (!written) return written.error();
    if (!*written) return Error{impl->path + ": empty: no controller has written to it yet", ErrorCode::invalid_input};
  }
  impl->schema_version = static_cast<int>(*version);

  r.texts.assign(static_cast<std::size_t>(Sql::count_), std::string());
  for (const auto& t : statement_texts())
    if (!(t.write && read_only) && t.since <= impl->schema_version) r.texts[static_cast<std::size_t>(t.id)] = t.sql;

  if (!read_only) {
    auto steps = c.query("SELECT from_state, to_state FROM lease_transitions");
    if (!steps) return Error{impl->path + ": " + steps.error().message, steps.error().code};
    for (const auto& row : steps->rows) {
      const auto* from = row.size() == 2 ? std::get_if<std::string>(&row[0]) : nullptr;
      const auto* to = row.size() == 2 ? std::get_if<std::string>(&row[1]) : nullptr;
      if (!from || !to)
        return Error{impl->path + ": lease_transitions: a row that is not two names", ErrorCode::failed};
      impl->lease_steps.emplace(*from, *to);
    }
    impl->start_writer();
  }
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

}  // namespace memlend::store
