// A thin layer over SQLite's C API for the store: a connection and prepared
// statements that free themselves, and a cursor that resets its statement and
// clears its bindings when it goes, so a statement prepared once at open is
// always ready for its next use.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace memlend::store::sql {

class Connection {
 public:
  Connection() = default;
  explicit Connection(sqlite3* db) : db_(db) {}
  ~Connection() { close(); }
  Connection(Connection&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Connection& operator=(Connection&& o) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* get() const { return db_; }
  explicit operator bool() const { return db_ != nullptr; }
  // Statements must be finalised first.
  void close();
  // The last error: "database disk image is malformed (SQLITE_CORRUPT)".
  std::string error() const { return describe(db_); }
  static std::string describe(sqlite3* db);

 private:
  sqlite3* db_ = nullptr;
};

class Statement {
 public:
  Statement() = default;
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(Statement&& o) noexcept : stmt_(o.stmt_) { o.stmt_ = nullptr; }
  Statement& operator=(Statement&& o) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // SQLITE_OK or the error code; on error the statement stays empty.
  int prepare(sqlite3* db, std::string_view sql);
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// One use of a prepared statement: binds parameters in order, steps, reads
// columns. Resets the statement and clears its bindings when it goes.
class Cursor {
 public:
  explicit Cursor(const Statement& s) : stmt_(s.get()) {}
  ~Cursor() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;

  Cursor& bind(std::int64_t v);
  Cursor& bind(std::uint64_t v) { return bind(static_cast<std::int64_t>(v)); }
  Cursor& bind(std::uint32_t v) { return bind(static_cast<std::int64_t>(v)); }
  Cursor& bind(int v) { return bind(static_cast<std::int64_t>(v)); }
  Cursor& bind(bool v) { return bind(static_cast<std::int64_t>(v ? 1 : 0)); }
  Cursor& bind(double v);
  // Text is bound without a copy: it must outlive the step, so temporaries
  // are refused at compile time.
  Cursor& bind(std::string_view v);
  Cursor& bind(const std::string& v) { return bind(std::string_view(v)); }
  Cursor& bind(std::string&&) = delete;
  Cursor& bind(const char* v) { return bind(std::string_view(v)); }
  Cursor& bind_null();
  template <class T>
  Cursor& bind(const std::optional<T>& v) {
    return v ? bind(*v) : bind_null();
  }
  // First bind error, if any (SQLITE_OK otherwise).
  int bind_error() const { return bind_rc_; }

  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int step();

  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  double real(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string text(int col) const;
  int type(int col) const { return sqlite3_column_type(stmt_, col); }
  int columns() const { return sqlite3_column_count(stmt_); }
  std::string column_name(int col) const;

 private:
  sqlite3_stmt* stmt_;
  int next_ = 1;
  int bind_rc_ = SQLITE_OK;
};

// Runs statements that return no rows; SQLITE_OK or the error code.
int exec(sqlite3* db, const char* sql);

// "SQLITE_CORRUPT" for an (extended) result code's primary code.
std::string_view code_name(int rc);

}  // namespace memlend::store::sql
