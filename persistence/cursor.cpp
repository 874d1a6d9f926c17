#include "persistence/store_impl.hpp"

#include <type_traits>

namespace memlend::store {

namespace {

bool returns_rows(const std::string& text) { return text.compare(0, 6, "SELECT") == 0; }

// dqlite answers a failing statement with SQLite's own result code. A lost
// leader (the connection gone, a timeout, or dqlite's own "not leader" and
// "leadership lost", which it codes as I/O errors) is no disk's fault:
// SQLITE_PROTOCOL stands for it.
int code_of(const replica::Client& c) {
  auto code = c.failure_code();
  bool not_leader = (code & 0xff) == SQLITE_IOERR && ((code >> 8) == 40 || (code >> 8) == 41);
  if (code == 0 || code > 0xffff || not_leader) return SQLITE_PROTOCOL;
  return static_cast<int>(code);
}

}  // namespace

Cursor::Cursor(const Store::Impl& im, Sql s) : im_(im), sql_(s) {
  if (!im.replicated) local_.emplace(im.stmt(s));
}

Cursor& Cursor::bind(std::int64_t v) {
  if (local_)
    local_->bind(v);
  else
    params_.emplace_back(v);
  return *this;
}

Cursor& Cursor::bind(double v) {
  if (local_)
    local_->bind(v);
  else
    params_.emplace_back(v);
  return *this;
}

Cursor& Cursor::bind(std::string_view v) {
  if (local_)
    local_->bind(v);
  else
    params_.emplace_back(std::string(v));
  return *this;
}

Cursor& Cursor::bind_null() {
  if (local_)
    local_->bind_null();
  else
    params_.emplace_back(replica::Null{});
  return *this;
}

int Cursor::run() {
  if (ran_ >= 0) return ran_;
  Replicated& r = *im_.replicated;
  const std::string& text = r.texts[static_cast<std::size_t>(sql_)];
  ran_ = SQLITE_OK;
  if (!r.client || r.client->spent()) {
    r.error = "no connection to the cluster's leader";
    return ran_ = SQLITE_PROTOCOL;
  }
  if (returns_rows(text)) {
    auto rows = r.client->query(text, params_);
    if (rows) {
      rows_ = std::move(*rows);
    } else {
      r.error = rows.error().message;
      ran_ = code_of(*r.client);
    }
  } else {
    auto done = r.client->exec(text, params_);
    if (done) {
      r.last_insert_id = static_cast<std::int64_t>(done->last_insert_id);
    } else {
      r.error = done.error().message;
      ran_ = code_of(*r.client);
    }
  }
  return ran_;
}

int Cursor::step() {
  if (local_) return local_->step();
  if (int rc = run(); rc != SQLITE_OK) return rc;
  if (next_ >= rows_.rows.size()) return SQLITE_DONE;
  ++next_;
  return SQLITE_ROW;
}

const replica::Value& Cursor::at(int col) const {
  static const replica::Value none = replica::Null{};
  if (next_ == 0 || col < 0) return none;
  const auto& row = rows_.rows[next_ - 1];
  return static_cast<std::size_t>(col) < row.size() ? row[static_cast<std::size_t>(col)] : none;
}

int Cursor::type(int col) const {
  if (local_) return local_->type(col);
  return std::visit(
      [](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::int64_t>) return SQLITE_INTEGER;
        if constexpr (std::is_same_v<T, double>) return SQLITE_FLOAT;
        if constexpr (std::is_same_v<T, std::string>) return SQLITE_TEXT;
        if constexpr (std::is_same_v<T, replica::Blob>) return SQLITE_BLOB;
        return SQLITE_NULL;
      },
      at(col));
}

// As SQLite converts a column read as another type: a number from its text,
// text from its number.
std::int64_t Cursor::int64(int col) const {
  if (local_) return local_->int64(col);
  const auto& v = at(col);
  if (const auto* i = std::get_if<std::int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) return static_cast<std::int64_t>(*d);
  if (const auto* t = std::get_if<std::string>(&v)) return std::strtoll(t->c_str(), nullptr, 10);
  return 0;
}

double Cursor::real(int col) const {
  if (local_) return local_->real(col);
  const auto& v = at(col);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(&v)) return static_cast<double>(*i);
  if (const auto* t = std::get_if<std::string>(&v)) return std::strtod(t->c_str(), nullptr);
  return 0;
}

std::string Cursor::text(int col) const {
  if (local_) return local_->text(col);
  const auto& v = at(col);
  if (const auto* t = std::get_if<std::string>(&v)) return *t;
  if (const auto* i = std::get_if<std::int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return std::to_string(*d);
  if (const auto* b = std::get_if<replica::Blob>(&v)) return std::string(b->bytes.begin(), b->bytes.end());
  return {};
}

// A remote statement's columns are known once it ran: asked first, it runs.
int Cursor::columns() {
  if (local_) return local_->columns();
  run();
  return static_cast<int>(rows_.columns.size());
}

std::string Cursor::column_name(int col) {
  if (local_) return local_->column_name(col);
  run();
  return col >= 0 && static_cast<std::size_t>(col) < rows_.columns.size() ? rows_.columns[static_cast<std::size_t>(col)]
                                                                          : std::string();
}

void Store::Impl::roll_back() const {
  if (replicated) {
    // A transaction the leader still holds open; "no transaction" is fine.
    if (replicated->client && !replicated->client->spent()) (void)replicated->client->exec("ROLLBACK");
    return;
  }
  if (!sqlite3_get_autocommit(db.get())) sql::exec(db.get(), "ROLLBACK");
}

}  // namespace memlend::store
