// The writer thread and group commit. Batches queue up while the previous
// group's fsync runs; the writer then takes all of them (up to max_group)
// into one transaction, each batch inside its own savepoint so that one
// refused batch is rolled back alone, and commits them with one fsync.
#include "persistence/store_impl.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>
#include <limits>

namespace memlend::store {

namespace {

template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

// A batch that breaks a rule is refused alone; any other failure is the file's.
bool is_refusal(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
    case SQLITE_TOOBIG:
      return true;
    default:
      return false;
  }
}

// Disk full and a foreign lock can pass; anything else means the file or the
// disk is in trouble, and the store stops writing rather than guess.
bool is_transient(int rc) {
  int p = rc & 0xff;
  return p == SQLITE_FULL || p == SQLITE_BUSY || p == SQLITE_LOCKED;
}

struct Result {
  int rc = SQLITE_OK;
  std::string message;
  bool ok() const { return rc == SQLITE_OK; }
};

std::optional<std::string> malformed(const Batch& b) {
  if (!std::isfinite(b.t_s())) return "a batch's scenario time must be a finite number";
  for (const auto& op : b.ops()) {
    if (const auto* e = std::get_if<EventRecord>(&op)) {
      const auto& names = event_names();
      if (std::find(names.begin(), names.end(), e->event) == names.end())
        return "\"" + e->event + "\" is not an event of the event log (DESIGN.md, \"Event log\")";
      if (!std::isfinite(e->t_s)) return "event " + e->event + ": its time must be a finite number";
    }
    if (const auto* l = std::get_if<LeaseRecord>(&op); l && l->id == 0) return "a lease id must be above 0";
  }
  return std::nullopt;
}

class Writer {
 public:
  Writer(Store::Impl& im, double t_s, std::int64_t now) : im_(im), t_s_(t_s), now_(now) {}

  Result run(Sql s) {
    Cursor c(im_, s);
    return done(c.step(), [] { return std::string(); });
  }

  Result apply(const Batch& b, std::vector<std::uint64_t>& seqs, std::uint64_t& max_lease) {
    for (const auto& op : b.ops()) {
      Result r = std::visit(overloaded{
                                [&](const HostRecord& h) { return put(h); },
                                [&](const VmRecord& v) { return put(v); },
                                [&](const LeaseRecord& l) {
                                  max_lease = std::max(max_lease, l.id);
                                  return put(l);
                                },
                                [&](const MirrorRecord& m) { return put(m); },
                                [&](const RecommendationRecord& r) { return put(r); },
                                [&](const Batch::DropRecommendation& d) { return drop(d); },
                                [&](const EventRecord& e) { return append(e, seqs); },
                                [&](const Batch::SetScenario& s) { return scenario(s); },
                                [&](const Batch::SetEpoch& e) { return epoch(e); },
                            },
                            op);
      if (!r.ok()) return r;
    }
    return {};
  }

 private:
  // SQLITE_DONE/ROW are success; on failure the message names what was being
  // written (made only then: this is the hot path of every batch).
  template <class What>
  Result done(int rc, What what) {
    if (rc == SQLITE_DONE || rc == SQLITE_ROW || rc == SQLITE_OK) return {};
    std::string detail = im_.error();
    if (is_refusal(rc)) return {rc, im_.path + ": refused " + what() + ": " + detail};
    return {rc, failure_message(im_.path, rc, detail)};
  }
  Result refuse(const std::string& what) { return {SQLITE_CONSTRAINT, im_.path + ": refused " + what}; }

  // A stored id keeps its name: a scenario whose hosts or VMs moved is refused.
  Result same_name(Sql s, std::uint32_t id, const std::string& name, const char* kind) {
    Cursor c(im_, s);
    int rc = c.bind(id).step();
    if (rc == SQLITE_ROW && c.text(0) != name)
      return refuse(std::string(kind) + " " + std::to_string(id) + " \"" + name + "\": the store has " + kind + " " +
                    std::to_string(id) + " as \"" + c.text(0) +
                    "\"; the scenario's list changed since the database was written (use a new --db for a new "
                    "scenario)");
    return done(rc, [&] { return std::string(kind) + " " + std::to_string(id); });
  }

  Result put(const HostRecord& h) {
    if (auto r = same_name(Sql::host_name, h.id, h.name, "host"); !r.ok()) return r;
    Cursor c(im_, Sql::host_upsert);
    c.bind(h.id).bind(h.name).bind(h.memory_mib).bind(h.cpu_mhz).bind(h.reserved_mib).bind(h.rdma);
    c.bind(h.data_path).bind(h.up).bind(h.fabric).bind(h.used_mib).bind(h.used_mhz).bind(h.actor_state);
    c.bind(t_s_).bind(now_);
    return done(c.step(), [&] { return "host " + std::to_string(h.id) + " \"" + h.name + "\""; });
  }

  Result put(const VmRecord& v) {
    if (auto r = same_name(Sql::vm_name, v.id, v.name, "VM"); !r.ok()) return r;
    Cursor c(im_, Sql::vm_upsert);
    c.bind(v.id).bind(v.name).bind(v.host).bind(v.memory_mib).bind(v.cpu_mhz).bind(v.local_mib);
    c.bind(v.remote_since_s).bind(v.migrating_to).bind(v.actor_state).bind(t_s_).bind(now_);
    return done(c.step(), [&] { return "VM " + std::to_string(v.id) + " \"" + v.name + "\""; });
  }

  Result put(const LeaseRecord& l) {
    auto what = [&] { return "lease " + std::to_string(l.id); };
    std::string from;
    {
      Cursor c(im_, Sql::lease_get);
      int rc = c.bind(l.id).step();
      if (rc == SQLITE_ROW) {
        from = c.text(2);
        if (static_cast<std::uint32_t>(c.int64(0)) != l.vm || static_cast<std::uint32_t>(c.int64(1)) != l.donor)
          return refuse(what() + ": its VM and donor cannot change (stored: VM " + std::to_string(c.int64(0)) +
                        ", donor " + std::to_string(c.int64(1)) + "); a new loan needs a new lease id");
        if (static_cast<std::uint64_t>(c.int64(3)) > l.epoch)
          return refuse(what() + ": its epoch cannot go down (stored " + std::to_string(c.int64(3)) + ", given " +
                        std::to_string(l.epoch) + ")");
      } else if (auto r = done(rc, what); !r.ok()) {
        return r;
      }
    }
    std::string to(to_string(l.state));
    if (!im_.lease_steps.count({from, to}))
      return refuse(what() + ": " + (from.empty() ? std::string("a new lease") : from) + " → " + to +
                    " is not a step a lease may take (see the table lease_transitions)");
    if (from.empty()) {
      Cursor c(im_, Sql::lease_insert);
      c.bind(l.id).bind(l.vm).bind(l.donor).bind(l.recipient).bind(l.mib).bind(to).bind(l.transport);
      c.bind(l.datapath_key).bind(l.epoch).bind(t_s_).bind(now_);
      return done(c.step(), what);
    }
    Cursor c(im_, Sql::lease_update);
    c.bind(l.id).bind(l.recipient).bind(l.mib).bind(to).bind(l.transport).bind(l.datapath_key).bind(l.epoch);
    c.bind(t_s_).bind(now_);
    return done(c.step(), what);
  }

  Result put(const MirrorRecord& m) {
    Cursor c(im_, Sql::mirror_upsert);
    c.bind(m.vm).bind(m.path).bind(m.bytes).bind(m.watermark_bytes).bind(to_string(m.state)).bind(t_s_).bind(now_);
    return done(c.step(), [&] { return "mirror of VM " + std::to_string(m.vm); });
  }

  Result put(const RecommendationRecord& r) {
    Cursor c(im_, Sql::recommendation_upsert);
    c.bind(r.vm).bind(r.target).bind(r.reason).bind(t_s_).bind(now_);
    return done(c.step(), [&] { return "recommendation for VM " + std::to_string(r.vm); });
  }

  Result drop(const Batch::DropRecommendation& d) {
    Cursor c(im_, Sql::recommendation_delete);
    return done(c.bind(d.vm).step(), [&] { return "recommendation for VM " + std::to_string(d.vm); });
  }

  Result append(const EventRecord& e, std::vector<std::uint64_t>& seqs) {
    auto text_or_null = [](Cursor& c, const std::string& s) -> Cursor& {
      return s.empty() ? c.bind_null() : c.bind(s);
    };
    Cursor c(im_, Sql::event_insert);
    c.bind(e.t_s).bind(e.event);
    text_or_null(c, e.vm);
    text_or_null(c, e.host);
    text_or_null(c, e.donor);
    c.bind(e.mib).bind(now_);
    // A file held at an older schema (tests only: the controller migrates)
    // has no column for it.
    if (im_.schema_version >= 4) text_or_null(c, e.reason);
    Result r = done(c.step(), [&] { return "event " + e.event; });
    // No AUTOINCREMENT: a rolled-back row's number is used again, so the log has no gaps.
    if (r.ok()) seqs.push_back(static_cast<std::uint64_t>(im_.last_insert_id()));
    return r;
  }

  Result scenario(const Batch::SetScenario& s) {
    Cursor c(im_, Sql::scenario_set);
    return done(c.bind(s.fingerprint).step(), [] { return std::string("scenario"); });
  }

  Result epoch(const Batch::SetEpoch& e) {
    if (!im_.has(Sql::epoch_set))
      return refuse("the leadership epoch: schema version " + std::to_string(im_.schema_version) + " keeps none");
    Cursor c(im_, Sql::epoch_set);
    return done(c.bind(e.epoch).step(), [&] { return "the leadership epoch " + std::to_string(e.epoch); });
  }

  Store::Impl& im_;
  double t_s_;
  std::int64_t now_;
};

}  // namespace

std::vector<Outcome> Store::Impl::write_group(std::vector<Unit>& units) {
  std::vector<Outcome> out(units.size());
  for (std::size_t i = 0; i < units.size(); ++i) out[i].ticket = units[i].ticket;
  auto fail_all = [&](const std::string& message) {
    for (auto& o : out) {
      o.status = Status::failed;
      o.error = message;
      o.event_seqs.clear();
    }
    return out;
  };
  std::lock_guard<std::mutex> g(db_mutex);
  {
    std::lock_guard<std::mutex> q(queue_mutex);
    if (!broken.empty()) return fail_all(broken);
  }
  bool committing = false;
  auto give_up = [&](const Result& r) {
    roll_back();
    // A COMMIT whose answer a lost leader never sent may have reached a
    // quorum: the next leader's store tells.
    std::string message = r.message + (committing && replicated
                                           ? "; whether this change was recorded is known once a leader is found"
                                           : "; nothing of this change was recorded");
    if (!is_transient(r.rc)) {
      std::lock_guard<std::mutex> q(queue_mutex);
      broken = r.message + "; the store stopped writing: restart memlend once this is fixed";
    }
    log(LogLevel::error, message);
    return fail_all(message);
  };

  const std::int64_t now = unix_ms_now();
  Writer tx(*this, 0, now);
  // First without savepoints, since a refused batch is rare (a bug in a
  // caller); when one is refused, the group is written again with a
  // savepoint per batch, so that only that batch is left out.
  for (bool isolate : {false, true}) {
    if (auto r = tx.run(Sql::begin); !r.ok()) return give_up(r);
    double clock = -std::numeric_limits<double>::infinity();
    std::uint64_t max_lease = 0;
    bool any = false;
    bool again = false;
    for (std::size_t i = 0; i < units.size() && !again; ++i) {
      const Batch& b = units[i].batch;
      out[i].status = Status::durable;
      out[i].error.clear();
      out[i].event_seqs.clear();
      Writer w(*this, b.t_s(), now);
      if (isolate)
        if (auto r = w.run(Sql::savepoint); !r.ok()) return give_up(r);
      std::uint64_t lease_here = 0;
      Result r = w.apply(b, out[i].event_seqs, lease_here);
      if (r.ok()) {
        if (isolate)
          if (auto rr = w.run(Sql::release); !rr.ok()) return give_up(rr);
        clock = std::max(clock, b.t_s());
        max_lease = std::max(max_lease, lease_here);
        any = true;
        continue;
      }
      if (!is_refusal(r.rc)) return give_up(r);
      if (!isolate) {
        if (auto rr = tx.run(Sql::rollback); !rr.ok()) return give_up(rr);
        again = true;
        continue;
      }
      out[i].status = Status::refused;
      out[i].error = r.message + "; nothing of this change was recorded";
      out[i].event_seqs.clear();
      if (auto rr = w.run(Sql::rollback_to); !rr.ok()) return give_up(rr);
      if (auto rr = w.run(Sql::release); !rr.ok()) return give_up(rr);
    }
    if (again) continue;
    if (any) {
      Cursor c(*this, Sql::controller_advance);
      c.bind(clock).bind(static_cast<std::int64_t>(max_lease + 1)).bind(now);
      int rc = c.step();
      if (rc != SQLITE_DONE) return give_up({rc, failure_message(path, rc, error())});
    }
    committing = true;
    if (auto r = tx.run(Sql::commit); !r.ok()) return give_up(r);
    break;
  }
  return out;
}

void Store::Impl::run_writer() {
  using clock = std::chrono::steady_clock;
  auto next_drop = clock::now();
  for (;;) {
    std::vector<Unit> units;
    bool due = false, working = false;
    {
      std::unique_lock<std::mutex> l(queue_mutex);
      queue_cv.wait_until(l, next_drop, [&] { return stopping || !queue.empty(); });
      if (queue.empty() && stopping) return;  // everything submitted is written
      due = clock::now() >= next_drop;
      working = broken.empty();
    }
    if (due) {
      // Between group commits, never inside one: a batch waits one short
      // transaction at most. A pause of its own keeps an idle writer idle.
      bool more = false;
      if (working) {
        auto dropped = drop_old_events(unix_ms_now());
        if (!dropped) log(LogLevel::warning, dropped.error().message);
        more = dropped && *dropped > 0 && *dropped >= options.events_drop_batch;
      }
      auto pause = std::max<clock::duration>(options.events_drop_every, std::chrono::milliseconds(10));
      next_drop = clock::now() + (more ? clock::duration::zero() : pause);
    }
    {
      std::unique_lock<std::mutex> l(queue_mutex);
      if (queue.empty()) continue;
      std::size_t n = std::min(queue.size(), std::max<std::size_t>(1, options.max_group));
      units.reserve(n);
      for (std::size_t i = 0; i < n; ++i) {
        units.push_back(std::move(queue.front()));
        queue.pop_front();
      }
    }
    auto began = std::chrono::steady_clock::now();
    std::vector<Outcome> outcomes = write_group(units);
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    {
      std::lock_guard<std::mutex> l(queue_mutex);
      bool committed = false;
      for (const auto& o : outcomes) {
        if (o.status == Status::durable) ++stats.batches, committed = true;
        if (o.status == Status::refused) ++stats.refused, committed = true;
        if (o.status == Status::failed) ++stats.failed;
      }
      if (committed) ++stats.commits;
    }
    if (options.on_commit) options.on_commit(took);
    for (std::size_t i = 0; i < units.size(); ++i) {
      if (!units[i].done) continue;
      try {
        units[i].done(outcomes[i]);
      } catch (const std::exception& e) {
        log(LogLevel::error, path + ": a caller's durability callback threw: " + e.what());
      } catch (...) {
        log(LogLevel::error, path + ": a caller's durability callback threw");
      }
    }
    {
      std::lock_guard<std::mutex> l(queue_mutex);
      done_through = units.back().ticket;
    }
    done_cv.notify_all();
  }
}

void Store::Impl::stop_writer() {
  {
    std::lock_guard<std::mutex> l(queue_mutex);
    stopping = true;
  }
  queue_cv.notify_all();
  if (writer.joinable()) writer.join();
}

Expected<std::uint64_t> Store::submit(Batch batch, OnDurable done) {
  Impl& im = *impl_;
  if (!im.writable()) return Error{im.path + ": opened read-only; nothing can be recorded"};
  if (auto bad = malformed(batch)) return Error{im.path + ": " + *bad};
  std::uint64_t ticket = 0;
  {
    std::lock_guard<std::mutex> l(im.queue_mutex);
    if (im.stopping) return Error{im.path + ": the store is closing; nothing more can be recorded"};
    if (!im.broken.empty()) return Error{im.broken};
    ticket = im.next_ticket++;
    im.queue.push_back(Impl::Unit{ticket, std::move(batch), std::move(done)});
  }
  im.queue_cv.notify_one();
  return ticket;
}

Outcome Store::commit(Batch batch) {
  if (auto bad = malformed(batch)) return Outcome{0, Status::refused, impl_->path + ": " + *bad, {}};
  std::promise<Outcome> promise;
  auto future = promise.get_future();
  auto ticket = submit(std::move(batch), [&promise](const Outcome& o) { promise.set_value(o); });
  if (!ticket) return Outcome{0, Status::failed, ticket.error().message, {}};
  return future.get();
}

void Store::flush() {
  Impl& im = *impl_;
  std::unique_lock<std::mutex> l(im.queue_mutex);
  std::uint64_t target = im.next_ticket - 1;
  im.done_cv.wait(l, [&] { return im.done_through >= target; });
}

}  // namespace memlend::store
