// Event retention: the event log is the one table that grows with time, so
// its oldest rows go once they are older than the days kept or beyond the
// rows kept. A pass drops at most one batch in its own transaction, so a
// backlog (a first start after an upgrade, a lowered limit) never holds the
// writer, and the batches of the controller wait behind one short commit at
// most. Freed pages are used again by new rows, so the file stops growing
// rather than shrinking.
#include "persistence/store_impl.hpp"

#include <algorithm>

namespace memlend::store {

Expected<std::uint64_t> Store::Impl::drop_old_events(std::int64_t now_unix_ms) {
  if (!writable()) return Error{path + ": opened read-only; nothing can be dropped"};
  // A file held at an older schema (tests only) has no retention mark.
  if (!has(Sql::events_drop)) return std::uint64_t{0};
  const bool by_age = options.events_keep_days > 0;
  const bool by_rows = options.events_keep_rows > 0;
  if ((!by_age && !by_rows) || options.events_drop_batch == 0) return std::uint64_t{0};

  std::lock_guard<std::mutex> g(db_mutex);
  {
    std::lock_guard<std::mutex> q(queue_mutex);
    if (!broken.empty()) return Error{broken};
  }
  auto failed = [&](int rc) -> Error {
    std::string message = failure_message(path, rc, error());
    roll_back();
    return Error{message + " (dropping the oldest events; nothing was dropped)"};
  };
  auto run = [&](Sql s) {
    Cursor c(*this, s);
    int rc = c.step();
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
  };
  if (int rc = run(Sql::begin); rc != SQLITE_OK) return failed(rc);

  std::int64_t first = 0, last = 0;
  {
    Cursor c(*this, Sql::events_bounds);
    int rc = c.step();
    if (rc != SQLITE_ROW) return failed(rc);
    first = c.int64(0);
    last = c.int64(1);
  }
  // The rows are numbered without gaps, so seq says how many are newer.
  const auto batch = static_cast<std::int64_t>(std::min<std::size_t>(options.events_drop_batch, 1u << 30));
  const std::int64_t batch_end = first + batch - 1;
  std::int64_t through = 0;
  if (by_rows && last - first + 1 > static_cast<std::int64_t>(options.events_keep_rows))
    through = last - static_cast<std::int64_t>(options.events_keep_rows);
  if (by_age && last > 0) {
    const std::int64_t cutoff = now_unix_ms - static_cast<std::int64_t>(options.events_keep_days) * 86400000;
    // Up to the first row of the batch that is recent enough: a prefix of the
    // log, even where the wall clock once went back.
    Cursor c(*this, Sql::events_first_recent);
    c.bind(first).bind(batch_end).bind(cutoff);
    int rc = c.step();
    if (rc == SQLITE_ROW)
      through = std::max(through, c.int64(0) - 1);
    else if (rc == SQLITE_DONE)
      through = std::max(through, batch_end);
    else
      return failed(rc);
  }
  through = std::min({through, batch_end, last - 1});
  if (last == 0 || through < first) {
    if (int rc = run(Sql::rollback); rc != SQLITE_OK) return failed(rc);
    return std::uint64_t{0};
  }
  {
    Cursor c(*this, Sql::retention_mark);
    int rc = c.bind(through).bind(now_unix_ms).step();
    if (rc != SQLITE_DONE) return failed(rc);
  }
  {
    Cursor c(*this, Sql::events_drop);
    int rc = c.bind(through).step();
    if (rc != SQLITE_DONE) return failed(rc);
  }
  if (int rc = run(Sql::commit); rc != SQLITE_OK) return failed(rc);
  return static_cast<std::uint64_t>(through - first + 1);
}

Expected<std::uint64_t> Store::drop_old_events(std::int64_t now_unix_ms) {
  return impl_->drop_old_events(now_unix_ms);
}

}  // namespace memlend::store
