// Reading the store back: recovery at start, support views, the event log.
// Each read runs in one read transaction, so it sees one consistent state
// even while a controller writes the same file from another process.
#include "persistence/store_impl.hpp"

#include <algorithm>

namespace memlend::store {

namespace {

class ReadTransaction {
 public:
  explicit ReadTransaction(const Store::Impl& im) : im_(im) {
    Cursor c(im_, Sql::read_begin);
    rc_ = c.step();
    if (rc_ == SQLITE_DONE) rc_ = SQLITE_OK;
    if (rc_ != SQLITE_OK) error_ = failure_message(im_.path, rc_, im_.error());
  }
  ~ReadTransaction() {
    if (rc_ == SQLITE_OK) {
      Cursor c(im_, Sql::read_end);
      c.step();
    }
  }
  bool ok() const { return rc_ == SQLITE_OK; }
  const std::string& error() const { return error_; }

 private:
  const Store::Impl& im_;
  int rc_ = SQLITE_OK;
  std::string error_;
};

// Steps a query to its end, handing each row to `row`.
template <class F>
int each_row(Cursor& c, F row) {
  int rc;
  while ((rc = c.step()) == SQLITE_ROW) row(c);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

std::optional<double> opt_real(const Cursor& c, int col) {
  if (c.is_null(col)) return std::nullopt;
  return c.real(col);
}

}  // namespace

std::vector<LeaseRecord> Snapshot::leases_in(LeaseState s) const {
  std::vector<LeaseRecord> out;
  for (const auto& l : leases)
    if (l.state == s) out.push_back(l);
  return out;
}

std::string_view view_name(View v) {
  switch (v) {
    case View::hosts: return "v_host_lending";
    case View::vms: return "v_vm_memory";
    case View::leases: return "v_leases";
    case View::mirrors: return "v_mirrors";
    case View::recommendations: return "v_recommendations";
    case View::recent_events: return "v_recent_events";
    case View::controller: return "v_controller";
    case View::vm_decisions: return "v_vm_decisions";
  }
  return "";
}

Expected<Snapshot> Store::load() const {
  const Impl& im = *impl_;
  std::lock_guard<std::mutex> g(im.db_mutex);
  ReadTransaction tx(im);
  if (!tx.ok()) return Error{tx.error()};
  Snapshot s;
  s.schema_version = im.schema_version;
  auto failed = [&](int rc) { return Error{failure_message(im.path, rc, im.error())}; };
  int rc;
  {
    Cursor c(im, Sql::load_controller);
    rc = each_row(c, [&](const Cursor& r) {
      s.clock_s = r.real(0);
      s.scenario = r.text(1);
      s.next_lease_id = static_cast<std::uint64_t>(r.int64(2));
      if (im.schema_version >= 5) s.epoch = static_cast<std::uint64_t>(r.int64(3));
    });
    if (rc != SQLITE_OK) return failed(rc);
  }
  {
    Cursor c(im, Sql::load_last_seq);
    rc = each_row(c, [&](const Cursor& r) { s.last_event_seq = static_cast<std::uint64_t>(r.int64(0)); });
    if (rc != SQLITE_OK) return failed(rc);
  }
  {
    Cursor c(im, Sql::load_hosts);
    rc = each_row(c, [&](const Cursor& r) {
      HostRecord h;
      h.id = static_cast<std::uint32_t>(r.int64(0));
      h.name = r.text(1);
      h.memory_mib = r.int64(2);
      h.cpu_mhz = r.int64(3);
      h.reserved_mib = r.int64(4);
      h.rdma = r.int64(5) != 0;
      h.data_path = r.int64(6) != 0;
      h.up = r.int64(7) != 0;
      h.fabric = r.text(8);
      h.used_mib = r.int64(9);
      h.used_mhz = r.int64(10);
      h.actor_state = r.text(11);
      h.updated_t_s = r.real(12);
      s.hosts.push_back(std::move(h));
    });
    if (rc != SQLITE_OK) return failed(rc);
  }
  {
    Cursor c(im, Sql::load_vms);
    rc = each_row(c, [&](const Cursor& r) {
      VmRecord v;
      v.id = static_cast<std::uint32_t>(r.int64(0));
      v.name = r.text(1);
      v.host = static_cast<std::uint32_t>(r.int64(2));
      v.memory_mib = r.int64(3);
      v.cpu_mhz = r.int64(4);
      v.local_mib = r.int64(5);
      v.remote_since_s = opt_real(r, 6);
      if (!r.is_null(7)) v.migrating_to = static_cast<std::uint32_t>(r.int64(7));
      v.actor_state = r.text(8);
      v.updated_t_s = r.real(9);
      s.vms.push_back(std::move(v));
    });
    if (rc != SQLITE_OK) return failed(rc);
  }
  {
    Cursor c(im, Sql::load_leases);
    rc = each_row(c, [&](const Cursor& r) {
      LeaseRecord l;
      l.id = static_cast<std::uint64_t>(r.int64(0));
      l.vm = static_cast<std::uint32_t>(r.int64(1));
      l.donor = static_cast<std::uint32_t>(r.int64(2));
      l.recipient = static_cast<std::uint32_t>(r.int64(3));
      l.mib = r.int64(4);
      // The schema's foreign key to lease_states keeps unknown names out.
      l.state = parse_lease_state(r.text(5)).value_or(LeaseState::failed);
      l.transport = r.text(6);
      l.datapath_key = r.text(7);
      l.epoch = static_cast<std::uint64_t>(r.int64(8));
      l.created_t_s = r.real(9);
      l.updated_t_s = r.real(10);
      s.leases.push_back(std::move(l));
    });
    if (rc != SQLITE_OK) return failed(rc);
  }
  {
    Cursor c(im, Sql::load_mirrors);
    rc = each_row(c, [&](const Cursor& r) {
      MirrorRecord m;
      m.vm = static_cast<std::uint32_t>(r.int64(0));
      m.path = r.text(1);
      m.bytes = r.int64(2);
      m.watermark_bytes = r.int64(3);
      m.state = parse_mirror_state(r.text(4)).value_or(MirrorState::writing);
      m.updated_t_s = r.real(5);
      s.mirrors.push_back(std::move(m));
    });
    if (rc != SQLITE_OK) return failed(rc);
  }
  {
    Cursor c(im, Sql::load_recommendations);
    rc = each_row(c, [&](const Cursor& r) {
      RecommendationRecord x;
      x.vm = static_cast<std::uint32_t>(r.int64(0));
      x.target = static_cast<std::uint32_t>(r.int64(1));
      x.reason = r.text(2);
      x.t_s = r.real(3);
      s.recommendations.push_back(std::move(x));
    });
    if (rc != SQLITE_OK) return failed(rc);
  }
  return s;
}

Expected<std::vector<EventRecord>> Store::events(std::uint64_t after, std::size_t limit) const {
  const Impl& im = *impl_;
  std::lock_guard<std::mutex> g(im.db_mutex);
  ReadTransaction tx(im);
  if (!tx.ok()) return Error{tx.error()};
  std::vector<EventRecord> out;
  Cursor c(im, Sql::load_events);
  std::int64_t most = limit > static_cast<std::size_t>(INT64_MAX) ? INT64_MAX : static_cast<std::int64_t>(limit);
  c.bind(after).bind(most);
  int rc = each_row(c, [&](const Cursor& r) {
    EventRecord e;
    e.seq = static_cast<std::uint64_t>(r.int64(0));
    e.t_s = r.real(1);
    e.event = r.text(2);
    e.vm = r.text(3);
    e.host = r.text(4);
    e.donor = r.text(5);
    if (!r.is_null(6)) e.mib = r.int64(6);
    e.reason = r.text(7);
    out.push_back(std::move(e));
  });
  if (rc != SQLITE_OK) return Error{failure_message(im.path, rc, im.error())};
  return out;
}

namespace {

// The first `columns` values of the cursor's row.
std::vector<Value> row_of(const Cursor& r, int columns) {
  std::vector<Value> row;
  row.reserve(static_cast<std::size_t>(columns));
  for (int i = 0; i < columns; ++i) {
    switch (r.type(i)) {
      case SQLITE_INTEGER: row.emplace_back(r.int64(i)); break;
      case SQLITE_FLOAT: row.emplace_back(r.real(i)); break;
      case SQLITE_NULL: row.emplace_back(std::monostate{}); break;
      default: row.emplace_back(r.text(i)); break;
    }
  }
  return row;
}

// The rows of a query as values, column names and all.
Expected<Table> table_of(const Store::Impl& im, Cursor& c) {
  Table t;
  const int columns = c.columns();
  for (int i = 0; i < columns; ++i) t.columns.push_back(c.column_name(i));
  int rc = each_row(c, [&](const Cursor& r) { t.rows.push_back(row_of(r, columns)); });
  if (rc != SQLITE_OK) return Error{failure_message(im.path, rc, im.error())};
  return t;
}

Error needs_version(const Store::Impl& im, const char* what) {
  return Error{im.path + ": schema version " + std::to_string(im.schema_version) + " keeps no " + what +
               " (version 4 does); the controller migrates the file when it next starts"};
}

}  // namespace

Expected<Table> Store::read(View v) const {
  static const Sql by_view[] = {Sql::view_hosts,           Sql::view_vms,           Sql::view_leases,
                                Sql::view_mirrors,         Sql::view_recommendations, Sql::view_recent_events,
                                Sql::view_controller,      Sql::view_vm_decisions};
  const Impl& im = *impl_;
  Sql s = by_view[static_cast<std::size_t>(v)];
  if (!im.has(s)) return needs_version(im, "decisions");
  std::lock_guard<std::mutex> g(im.db_mutex);
  ReadTransaction tx(im);
  if (!tx.ok()) return Error{tx.error()};
  Cursor c(im, s);
  return table_of(im, c);
}

Expected<Table> Store::events_since(std::int64_t since_unix_ms, std::size_t limit) const {
  const Impl& im = *impl_;
  std::lock_guard<std::mutex> g(im.db_mutex);
  ReadTransaction tx(im);
  if (!tx.ok()) return Error{tx.error()};
  Cursor c(im, Sql::events_newest_first);
  Table t;
  const int shown = c.columns() - 1;  // the last column is what the rows are judged by
  for (int i = 0; i < shown; ++i) t.columns.push_back(c.column_name(i));
  int rc = SQLITE_DONE;
  while (t.rows.size() < limit && (rc = c.step()) == SQLITE_ROW && c.int64(shown) >= since_unix_ms)
    t.rows.push_back(row_of(c, shown));
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return Error{failure_message(im.path, rc, im.error())};
  std::reverse(t.rows.begin(), t.rows.end());
  return t;
}

Expected<void> Store::export_to(const std::string& file) const {
  const Impl& im = *impl_;
  std::lock_guard<std::mutex> g(im.db_mutex);
  if (im.replicated) return export_replicated(im, file);
  auto done = write_copy(im.db.get(), file);
  if (!done) return Error{im.path + ": cannot export it to " + file + " (" + done.error().message + ")"};
  return {};
}

Expected<Table> Store::decisions(const std::string& vm, std::size_t limit) const {
  const Impl& im = *impl_;
  if (!im.has(Sql::decisions_of_vm)) return needs_version(im, "reasons for its decisions");
  std::lock_guard<std::mutex> g(im.db_mutex);
  ReadTransaction tx(im);
  if (!tx.ok()) return Error{tx.error()};
  Cursor c(im, Sql::decisions_of_vm);
  std::int64_t most = limit > static_cast<std::size_t>(INT64_MAX) ? INT64_MAX : static_cast<std::int64_t>(limit);
  c.bind(vm).bind(most);
  auto t = table_of(im, c);
  if (!t || !t->rows.empty()) return t;
  // No decision: a VM that has none yet, or a name the store does not know.
  {
    Cursor found(im, Sql::vm_known);
    int rc = found.bind(vm).step();
    if (rc == SQLITE_ROW) return t;
    if (rc != SQLITE_DONE) return Error{failure_message(im.path, rc, im.error())};
  }
  Cursor names(im, Sql::vm_names);
  std::string list;
  int shown = 0;
  int rc = each_row(names, [&](const Cursor& r) {
    if (shown++) list += ", ";
    list += shown > 10 ? std::string("...") : r.text(0);
  });
  if (rc != SQLITE_OK) return Error{failure_message(im.path, rc, im.error())};
  return Error{im.path + ": no VM named \"" + vm + "\" (" +
               (shown ? "its VMs: " + list : std::string("it holds no VMs yet")) + ")"};
}

}  // namespace memlend::store
