#define BOOST_TEST_MODULE persistence_store
#include <boost/test/unit_test.hpp>

#include "persistence/schema.hpp"
#include "persistence/store.hpp"
#include "tests/persistence/support.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

using namespace memlend::store;
using memlend::test::TempDir;

namespace {

std::unique_ptr<Store> open_ok(const std::string& path, Access access = Access::read_write) {
  Options o;
  o.access = access;
  auto s = Store::open(path, o);
  BOOST_TEST_REQUIRE(bool(s), (s ? std::string() : s.error().message));
  return std::move(*s);
}

// Hosts A, B, C and VMs VM0 (on A) and VM1 (on B), committed.
void setup_cluster(Store& s) {
  Batch b(0);
  for (std::uint32_t h = 0; h < 3; ++h) b.put(memlend::test::test_host(h));
  for (std::uint32_t v = 0; v < 2; ++v) {
    VmRecord r;
    r.id = v;
    r.name = "VM" + std::to_string(v);
    r.host = v;
    r.memory_mib = 8192;
    b.put(r);
  }
  auto o = s.commit(std::move(b));
  BOOST_TEST_REQUIRE(o.ok(), o.error);
}

LeaseRecord lease(std::uint64_t id, LeaseState state, std::int64_t mib = 1024) {
  LeaseRecord l;
  l.id = id;
  l.vm = 0;
  l.donor = 1;
  l.recipient = 0;
  l.mib = mib;
  l.state = state;
  return l;
}

EventRecord event(const char* name, double t, std::int64_t mib = -1) {
  EventRecord e;
  e.t_s = t;
  e.event = name;
  e.vm = "VM0";
  e.host = "A";
  if (mib >= 0) e.mib = mib;
  return e;
}

// Holds the writer inside one batch's callback, so that the batches submitted
// meanwhile are all written by its next group commit, together.
struct WriterGate {
  std::mutex m;
  std::condition_variable cv;
  bool open = false;
  std::promise<void> entered;

  void hold(Store& s) {
    auto t = s.submit(Batch(0), [this](const Outcome&) {
      entered.set_value();
      std::unique_lock<std::mutex> l(m);
      cv.wait(l, [this] { return open; });
    });
    BOOST_TEST_REQUIRE(bool(t));
    entered.get_future().wait();
  }
  void release() {
    {
      std::lock_guard<std::mutex> l(m);
      open = true;
    }
    cv.notify_all();
  }
};

std::optional<LeaseRecord> find_lease(const Snapshot& s, std::uint64_t id) {
  for (const auto& l : s.leases)
    if (l.id == id) return l;
  return std::nullopt;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_new_database_is_private_in_wal_mode_and_marked_as_memlends) {
  TempDir dir("store");
  std::string path = dir.file("memlend.db");
  auto s = open_ok(path);
  struct stat st;
  BOOST_TEST_REQUIRE(::stat(path.c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0600u);
  const int newest = memlend::store::builtin_migrations().back().to_version;
  BOOST_TEST(s->schema_version() == newest);
  BOOST_TEST(memlend::test::raw_value(path, "PRAGMA journal_mode") == "wal");
  BOOST_TEST(memlend::test::raw_value(path, "PRAGMA application_id") == std::to_string(0x6d6c6e64));
  BOOST_TEST(memlend::test::raw_value(path, "PRAGMA user_version") == std::to_string(newest));
  auto snap = s->load();
  BOOST_TEST_REQUIRE(bool(snap));
  BOOST_TEST(snap->fresh());
  BOOST_TEST(snap->next_lease_id == 1u);
}

BOOST_AUTO_TEST_CASE(everything_committed_comes_back_after_a_restart) {
  TempDir dir("store");
  std::string path = dir.file("memlend.db");
  memlend::test::write_sample_v1(path);
  auto s = open_ok(path);
  auto snap = s->load();
  BOOST_TEST_REQUIRE(bool(snap), (snap ? "" : snap.error().message));
  BOOST_TEST(snap->clock_s == 680.0);
  BOOST_TEST(snap->scenario == "sample-v1");
  BOOST_TEST(snap->next_lease_id == 4u);
  BOOST_TEST(snap->last_event_seq == 7u);
  BOOST_TEST_REQUIRE(snap->hosts.size() == 3u);
  BOOST_TEST(snap->hosts[2].name == "N");
  BOOST_TEST(snap->hosts[2].rdma == false);
  BOOST_TEST(snap->hosts[2].fabric == "rack2");
  BOOST_TEST(snap->hosts[2].actor_state == "{\"seen\":true}");
  BOOST_TEST_REQUIRE(snap->vms.size() == 3u);
  BOOST_TEST(snap->vms[1].remote_since_s.value_or(-1) == 50.0);
  BOOST_TEST(!snap->vms[0].remote_since_s.has_value());
  // Lease 2 was released: history, not recovery state.
  BOOST_TEST_REQUIRE(snap->leases.size() == 2u);
  BOOST_TEST(snap->leases[0].id == 1u);
  BOOST_TEST(snap->leases[0].state == LeaseState::active);
  BOOST_TEST(snap->leases[0].datapath_key == "rkey=0x17;addr=0x7f0000000000");
  BOOST_TEST(snap->leases[0].created_t_s == 30.0);
  BOOST_TEST(snap->leases[0].updated_t_s == 50.0);
  BOOST_TEST(snap->leases[1].id == 3u);
  BOOST_TEST(snap->leases_in(LeaseState::reserving).size() == 1u);
  BOOST_TEST_REQUIRE(snap->mirrors.size() == 1u);
  BOOST_TEST(snap->mirrors[0].bytes == (49152LL << 20));
  BOOST_TEST_REQUIRE(snap->recommendations.size() == 1u);
  BOOST_TEST(snap->recommendations[0].target == 1u);

  auto events = s->events();
  BOOST_TEST_REQUIRE(bool(events));
  BOOST_TEST_REQUIRE(events->size() == 7u);
  for (std::size_t i = 0; i < events->size(); ++i) BOOST_TEST((*events)[i].seq == i + 1);
  BOOST_TEST((*events)[6].event == "donor_failed");
  BOOST_TEST(!(*events)[6].mib.has_value());
  BOOST_TEST((*events)[6].vm.empty());
  auto tail = s->events(5);
  BOOST_TEST_REQUIRE(bool(tail));
  BOOST_TEST(tail->size() == 2u);
}

BOOST_AUTO_TEST_CASE(a_lease_moves_only_along_lease_transitions) {
  TempDir dir("store");
  auto s = open_ok(dir.file("memlend.db"));
  setup_cluster(*s);
  auto step = [&](LeaseRecord l) { return s->commit(Batch(1).put(l)); };
  BOOST_TEST(step(lease(1, LeaseState::reserving)).ok());
  BOOST_TEST(step(lease(1, LeaseState::active)).ok());
  BOOST_TEST(step(lease(1, LeaseState::active)).ok());  // the same state again: a restarted actor
  auto back = step(lease(1, LeaseState::reserving));
  BOOST_TEST((back.status == Status::refused));
  BOOST_TEST(back.error.find("active → reserving") != std::string::npos, back.error);
  BOOST_TEST(back.error.find(s->path()) == 0u, back.error);
  BOOST_TEST(step(lease(1, LeaseState::draining)).ok());
  BOOST_TEST(step(lease(1, LeaseState::released)).ok());
  BOOST_TEST((step(lease(1, LeaseState::active)).status == Status::refused));
  BOOST_TEST((step(lease(2, LeaseState::draining)).status == Status::refused));  // new leases start at phase one
  BOOST_TEST((step(lease(3, LeaseState::failed)).status == Status::refused));
  BOOST_TEST(step(lease(4, LeaseState::active)).ok());
  BOOST_TEST(step(lease(4, LeaseState::failed)).ok());
  BOOST_TEST(step(lease(4, LeaseState::released)).ok());
}

BOOST_AUTO_TEST_CASE(a_lease_keeps_its_vm_donor_and_epoch_order) {
  TempDir dir("store");
  auto s = open_ok(dir.file("memlend.db"));
  setup_cluster(*s);
  auto l = lease(1, LeaseState::active);
  l.epoch = 3;
  BOOST_TEST(s->commit(Batch(1).put(l)).ok());
  auto other_donor = l;
  other_donor.donor = 2;
  BOOST_TEST((s->commit(Batch(2).put(other_donor)).status == Status::refused));
  auto older = l;
  older.epoch = 2;
  BOOST_TEST((s->commit(Batch(2).put(older)).status == Status::refused));
  auto moved = l;  // the VM migrated: the lease follows it
  moved.recipient = 2;
  moved.epoch = 4;
  BOOST_TEST(s->commit(Batch(3).put(moved)).ok());
  auto snap = s->load();
  BOOST_TEST_REQUIRE(bool(snap));
  BOOST_TEST(snap->leases.at(0).recipient == 2u);
  BOOST_TEST(snap->leases.at(0).epoch == 4u);
}

BOOST_AUTO_TEST_CASE(rows_that_name_missing_hosts_or_vms_are_refused) {
  TempDir dir("store");
  auto s = open_ok(dir.file("memlend.db"));
  setup_cluster(*s);
  auto l = lease(1, LeaseState::active);
  l.vm = 9;
  auto o = s->commit(Batch(1).put(l));
  BOOST_TEST((o.status == Status::refused));
  BOOST_TEST(o.error.find("FOREIGN KEY") != std::string::npos, o.error);
  MirrorRecord m;
  m.vm = 7;
  m.path = "x";
  BOOST_TEST((s->commit(Batch(1).put(m)).status == Status::refused));
  RecommendationRecord r;
  r.vm = 0;
  r.target = 5;
  BOOST_TEST((s->commit(Batch(1).put(r)).status == Status::refused));
  auto self_loan = lease(2, LeaseState::active);
  self_loan.recipient = self_loan.donor;
  BOOST_TEST((s->commit(Batch(1).put(self_loan)).status == Status::refused));
}

BOOST_AUTO_TEST_CASE(a_host_or_vm_id_keeps_its_name) {
  TempDir dir("store");
  auto s = open_ok(dir.file("memlend.db"));
  setup_cluster(*s);
  HostRecord h;
  h.id = 1;
  h.name = "Z";
  auto o = s->commit(Batch(1).put(h));
  BOOST_TEST((o.status == Status::refused));
  BOOST_TEST(o.error.find("\"B\"") != std::string::npos, o.error);
  VmRecord v;
  v.id = 0;
  v.name = "VM1";  // another VM's name
  BOOST_TEST((s->commit(Batch(1).put(v)).status == Status::refused));
}

BOOST_AUTO_TEST_CASE(a_malformed_batch_is_not_queued) {
  TempDir dir("store");
  auto s = open_ok(dir.file("memlend.db"));
  auto bad_event = s->submit(Batch(1).event(event("lease_grunted", 1)), [](const Outcome&) {
    BOOST_FAIL("a batch that was not queued has no outcome");
  });
  BOOST_TEST(!bad_event);
  BOOST_TEST(bad_event.error().message.find("lease_grunted") != std::string::npos);
  BOOST_TEST(!s->submit(Batch(std::nan("")), {}));
  BOOST_TEST((s->commit(Batch(1).put(lease(0, LeaseState::active))).status == Status::refused));
}

BOOST_AUTO_TEST_CASE(a_refused_batch_in_a_group_commit_leaves_the_others_and_no_gap) {
  TempDir dir("store");
  auto s = open_ok(dir.file("memlend.db"));
  setup_cluster(*s);
  WriterGate gate;
  gate.hold(*s);
  std::vector<Outcome> outcomes(3);
  auto keep = [&](int i) { return [&outcomes, i](const Outcome& o) { outcomes[i] = o; }; };
  BOOST_TEST_REQUIRE(bool(s->submit(Batch(5).put(lease(1, LeaseState::active)).event(event("lease_granted", 5, 1024)),
                                    keep(0))));
  // Refused: its event must not take a number.
  BOOST_TEST_REQUIRE(bool(s->submit(Batch(6).event(event("lease_released", 6)).put(lease(1, LeaseState::reserving)),
                                    keep(1))));
  BOOST_TEST_REQUIRE(bool(s->submit(Batch(7).event(event("need_detected", 7, 512)), keep(2))));
  auto before = s->stats();
  gate.release();
  s->flush();
  BOOST_TEST(outcomes[0].ok());
  BOOST_TEST((outcomes[1].status == Status::refused));
  BOOST_TEST(outcomes[1].event_seqs.empty());
  BOOST_TEST(outcomes[2].ok());
  BOOST_TEST(outcomes[0].event_seqs == std::vector<std::uint64_t>{1});
  BOOST_TEST(outcomes[2].event_seqs == std::vector<std::uint64_t>{2});
  auto after = s->stats();
  BOOST_TEST(after.commits - before.commits == 1u);  // the three went in one transaction
  BOOST_TEST(after.refused == 1u);
  auto events = s->events();
  BOOST_TEST_REQUIRE(bool(events));
  BOOST_TEST_REQUIRE(events->size() == 2u);
  BOOST_TEST((*events)[1].event == "need_detected");
  auto snap = s->load();
  BOOST_TEST_REQUIRE(bool(snap));
  BOOST_TEST(find_lease(*snap, 1)->state == LeaseState::active);
  BOOST_TEST(snap->clock_s == 7.0);
}

BOOST_AUTO_TEST_CASE(outcomes_arrive_once_each_in_submission_order_from_many_threads) {
  TempDir dir("store");
  auto s = open_ok(dir.file("memlend.db"));
  setup_cluster(*s);
  constexpr int threads = 4;
  constexpr int per_thread = 500;
  std::mutex m;
  std::vector<std::uint64_t> seen;
  std::vector<std::uint64_t> seqs;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto l = lease(static_cast<std::uint64_t>(t * per_thread + i + 1), LeaseState::active, 1 + i);
        auto ticket = s->submit(Batch(i).put(l).event(event("lease_granted", i, 1 + i)), [&](const Outcome& o) {
          std::lock_guard<std::mutex> g(m);
          BOOST_TEST(o.ok());
          seen.push_back(o.ticket);
          seqs.insert(seqs.end(), o.event_seqs.begin(), o.event_seqs.end());
        });
        BOOST_TEST(bool(ticket));
      }
    });
  for (auto& w : workers) w.join();
  s->flush();
  BOOST_TEST_REQUIRE(seen.size() == std::size_t{threads * per_thread});
  BOOST_TEST(std::is_sorted(seen.begin(), seen.end()));
  std::sort(seqs.begin(), seqs.end());
  for (std::size_t i = 0; i < seqs.size(); ++i) BOOST_TEST_REQUIRE(seqs[i] == i + 1);
  auto stats = s->stats();
  BOOST_TEST(stats.batches == std::uint64_t{threads * per_thread} + 1);
  auto snap = s->load();
  BOOST_TEST_REQUIRE(bool(snap));
  BOOST_TEST(snap->leases.size() == std::size_t{threads * per_thread});
  BOOST_TEST(snap->next_lease_id == std::uint64_t{threads * per_thread} + 1);
}

BOOST_AUTO_TEST_CASE(closing_writes_everything_submitted) {
  TempDir dir("store");
  std::string path = dir.file("memlend.db");
  std::atomic<int> durable{0};
  {
    auto s = open_ok(path);
    setup_cluster(*s);
    for (int i = 1; i <= 300; ++i)
      BOOST_TEST_REQUIRE(bool(s->submit(Batch(i).event(event("need_detected", i, i)),
                                        [&](const Outcome& o) { durable += o.ok() ? 1 : 0; })));
  }
  BOOST_TEST(durable.load() == 300);
  BOOST_TEST(!memlend::test::file_exists(path + "-wal"));  // a clean close checkpoints and removes it
  auto s = open_ok(path);
  auto snap = s->load();
  BOOST_TEST_REQUIRE(bool(snap));
  BOOST_TEST(snap->last_event_seq == 300u);
  BOOST_TEST(snap->clock_s == 300.0);
}

BOOST_AUTO_TEST_CASE(the_clock_only_moves_forward) {
  TempDir dir("store");
  auto s = open_ok(dir.file("memlend.db"));
  BOOST_TEST(s->commit(Batch(120)).ok());
  BOOST_TEST(s->commit(Batch(90).event(event("need_detected", 90))).ok());
  auto snap = s->load();
  BOOST_TEST_REQUIRE(bool(snap));
  BOOST_TEST(snap->clock_s == 120.0);
}

BOOST_AUTO_TEST_CASE(a_callback_that_throws_does_not_stop_the_writer) {
  TempDir dir("store");
  auto s = open_ok(dir.file("memlend.db"));
  std::vector<std::string> logged;
  set_log_sink([&](LogLevel, const std::string& m) { logged.push_back(m); });
  BOOST_TEST(bool(s->submit(Batch(1), [](const Outcome&) { throw std::runtime_error("boom"); })));
  s->flush();
  set_log_sink({});
  BOOST_TEST(s->commit(Batch(2)).ok());
  BOOST_TEST_REQUIRE(logged.size() == 1u);
  BOOST_TEST(logged[0].find("boom") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(a_reader_sees_committed_state_while_the_controller_runs_and_cannot_write) {
  TempDir dir("store");
  std::string path = dir.file("memlend.db");
  auto writer = open_ok(path);
  setup_cluster(*writer);
  BOOST_TEST(writer->commit(Batch(5).put(lease(1, LeaseState::active, 4096))).ok());
  auto reader = open_ok(path, Access::read_only);
  auto leases = reader->read(View::leases);
  BOOST_TEST_REQUIRE(bool(leases));
  BOOST_TEST_REQUIRE(leases->rows.size() == 1u);
  BOOST_TEST(!reader->submit(Batch(6), {}));
  BOOST_TEST((reader->commit(Batch(6)).status == Status::failed));
  BOOST_TEST(writer->commit(Batch(6).put(lease(1, LeaseState::draining, 4096))).ok());
  auto again = reader->load();
  BOOST_TEST_REQUIRE(bool(again));
  BOOST_TEST(again->leases.at(0).state == LeaseState::draining);
}

BOOST_AUTO_TEST_CASE(the_support_views_add_up_the_leases) {
  TempDir dir("store");
  std::string path = dir.file("memlend.db");
  memlend::test::write_sample_v1(path);
  auto s = open_ok(path, Access::read_only);
  auto column = [](const Table& t, const std::string& name) {
    auto it = std::find(t.columns.begin(), t.columns.end(), name);
    BOOST_TEST_REQUIRE((it != t.columns.end()), "column " << name);
    return static_cast<std::size_t>(it - t.columns.begin());
  };
  auto hosts = s->read(View::hosts);
  BOOST_TEST_REQUIRE(bool(hosts));
  BOOST_TEST_REQUIRE(hosts->rows.size() == 3u);
  // B lends VM2 48 GiB (active) and VM3 2 GiB (still reserving).
  BOOST_TEST(std::get<std::int64_t>(hosts->rows[1][column(*hosts, "lent_mib")]) == 49152);
  BOOST_TEST(std::get<std::int64_t>(hosts->rows[1][column(*hosts, "reserving_mib")]) == 2048);
  BOOST_TEST(std::get<std::int64_t>(hosts->rows[1][column(*hosts, "free_mib")]) == 131072 - 49152 - 2048);
  BOOST_TEST(std::get<std::int64_t>(hosts->rows[0][column(*hosts, "borrowed_mib")]) == 49152);

  auto vms = s->read(View::vms);
  BOOST_TEST_REQUIRE(bool(vms));
  BOOST_TEST(std::get<std::string>(vms->rows[1][column(*vms, "name")]) == "VM2");
  BOOST_TEST(std::get<std::int64_t>(vms->rows[1][column(*vms, "borrowed_mib")]) == 49152);
  BOOST_TEST(std::get<std::int64_t>(vms->rows[1][column(*vms, "mirror_mib")]) == 49152);
  BOOST_TEST(std::get<std::int64_t>(vms->rows[1][column(*vms, "short_mib")]) == 65536 - 8192 - 49152);
  BOOST_TEST(std::get<std::string>(vms->rows[1][column(*vms, "recommended_target")]) == "B");

  auto leases = s->read(View::leases);
  BOOST_TEST_REQUIRE(bool(leases));
  BOOST_TEST(leases->rows.size() == 3u);  // history included
  BOOST_TEST(std::get<std::string>(leases->rows[1][column(*leases, "state")]) == "released");
  BOOST_TEST(std::get<std::string>(leases->rows[0][column(*leases, "donor")]) == "B");

  auto events = s->read(View::recent_events);
  BOOST_TEST_REQUIRE(bool(events));
  BOOST_TEST_REQUIRE(events->rows.size() == 7u);
  BOOST_TEST(std::holds_alternative<std::monostate>(events->rows[6][column(*events, "mib")]));

  auto controller = s->read(View::controller);
  BOOST_TEST_REQUIRE(bool(controller));
  BOOST_TEST(std::get<std::int64_t>(controller->rows.at(0)[column(*controller, "schema_version")]) ==
             memlend::store::builtin_migrations().back().to_version);
  BOOST_TEST(std::get<std::int64_t>(controller->rows.at(0)[column(*controller, "live_leases")]) == 2);
}

BOOST_AUTO_TEST_CASE(the_event_log_is_append_only_even_behind_the_stores_back) {
  TempDir dir("store");
  std::string path = dir.file("memlend.db");
  memlend::test::write_sample_v1(path);
  BOOST_CHECK_THROW(memlend::test::raw_sql(path, "DELETE FROM events WHERE seq = 3"), std::runtime_error);
  BOOST_CHECK_THROW(memlend::test::raw_sql(path, "UPDATE events SET mib = 1 WHERE seq = 3"), std::runtime_error);
}

BOOST_AUTO_TEST_CASE(a_database_others_could_read_is_made_private) {
  TempDir dir("store");
  std::string path = dir.file("memlend.db");
  memlend::test::write_sample_v1(path);
  BOOST_TEST_REQUIRE(::chmod(path.c_str(), 0644) == 0);
  auto s = open_ok(path);
  for (const char* suffix : {"", "-wal", "-shm"}) {
    struct stat st;
    BOOST_TEST_REQUIRE(::stat((path + suffix).c_str(), &st) == 0);
    BOOST_TEST((st.st_mode & 0777) == 0600u, suffix);
  }
}
