// The store's throughput and recovery time, on a real file:
//   - durable transitions per second (a lease step and its event per batch),
//     with group commit against one transaction (one fsync) per batch, both
//     through the same store in the same run;
//   - recovery of 10,000 leases: open (with its integrity check) and load().
//
//   bench_store [--dir DIR] [--transitions N]
//
// DIR (default: $TMPDIR or /tmp) decides the disk, and so what an fsync costs.
#include "persistence/store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace memlend::store;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::unique_ptr<Store> open_or_die(const std::string& path) {
  auto s = Store::open(path);
  if (!s) {
    std::fprintf(stderr, "bench_store: %s\n", s.error().message.c_str());
    std::exit(1);
  }
  return std::move(*s);
}

void must(const Outcome& o) {
  if (o.ok()) return;
  std::fprintf(stderr, "bench_store: %s\n", o.error.c_str());
  std::exit(1);
}

// `hosts` hosts and `vms` VMs, so that leases have something to refer to.
void setup(Store& s, std::uint32_t hosts, std::uint32_t vms) {
  Batch b(0);
  for (std::uint32_t h = 0; h < hosts; ++h) {
    HostRecord r;
    r.id = h;
    r.name = "host" + std::to_string(h);
    r.memory_mib = 1 << 20;
    r.cpu_mhz = 64000;
    b.put(r);
  }
  for (std::uint32_t v = 0; v < vms; ++v) {
    VmRecord r;
    r.id = v;
    r.name = "vm" + std::to_string(v);
    r.host = v % hosts;
    r.memory_mib = 65536;
    b.put(r);
  }
  must(s.commit(std::move(b)));
}

// Lease `id` granted: the lease row and its event, as the planner records them.
LeaseRecord lease_for(std::uint64_t id, std::uint32_t hosts, std::uint32_t vms) {
  LeaseRecord l;
  l.id = id;
  l.vm = static_cast<std::uint32_t>(id % vms);
  l.recipient = l.vm % hosts;
  l.donor = (l.recipient + 1 + static_cast<std::uint32_t>(id % (hosts - 1))) % hosts;
  l.mib = 1024;
  l.state = LeaseState::active;
  l.datapath_key = "rkey=" + std::to_string(id);
  return l;
}

EventRecord event_for(const LeaseRecord& l) {
  EventRecord e;
  e.t_s = static_cast<double>(l.id);
  e.event = "lease_granted";
  e.vm = "vm" + std::to_string(l.vm);
  e.host = "host" + std::to_string(l.recipient);
  e.donor = "host" + std::to_string(l.donor);
  e.mib = l.mib;
  return e;
}

Batch transition(std::uint64_t id, std::uint32_t hosts, std::uint32_t vms) {
  LeaseRecord l = lease_for(id, hosts, vms);
  EventRecord e = event_for(l);
  Batch b(static_cast<double>(id));
  b.put(std::move(l)).event(std::move(e));
  return b;
}

struct Rate {
  std::uint64_t n = 0;
  double seconds = 0;
  std::uint64_t commits = 0;
  double per_second() const { return static_cast<double>(n) / seconds; }
};

// Producer threads submit without waiting, as actors do; the clock stops
// when the last outcome is in.
Rate group_commit(const std::string& path, std::uint64_t n, int producers) {
  auto s = open_or_die(path);
  setup(*s, 64, 1024);
  std::atomic<std::uint64_t> durable{0};
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p)
    threads.emplace_back([&, p] {
      for (std::uint64_t id = 1 + static_cast<std::uint64_t>(p); id <= n; id += static_cast<std::uint64_t>(producers)) {
        auto t = s->submit(transition(id, 64, 1024), [&](const Outcome& o) {
          must(o);
          durable.fetch_add(1, std::memory_order_relaxed);
        });
        if (!t) {
          std::fprintf(stderr, "bench_store: %s\n", t.error().message.c_str());
          std::exit(1);
        }
      }
    });
  for (auto& t : threads) t.join();
  s->flush();
  Rate r{durable.load(), seconds_since(start), s->stats().commits - 1};
  return r;
}

// The plain loop: each batch committed and waited for before the next.
Rate one_per_batch(const std::string& path, std::uint64_t n) {
  auto s = open_or_die(path);
  setup(*s, 64, 1024);
  auto start = Clock::now();
  for (std::uint64_t id = 1; id <= n; ++id) must(s->commit(transition(id, 64, 1024)));
  return Rate{n, seconds_since(start), s->stats().commits - 1};
}

void recovery(const std::string& path, std::uint64_t leases) {
  {
    auto s = open_or_die(path);
    setup(*s, 100, 2000);
    const std::uint64_t chunk = 1000;
    for (std::uint64_t first = 1; first <= leases; first += chunk) {
      Batch b(static_cast<double>(first));
      for (std::uint64_t id = first; id < first + chunk && id <= leases; ++id) {
        LeaseRecord l = lease_for(id, 100, 2000);
        b.event(event_for(l)).put(std::move(l));
      }
      must(s->commit(std::move(b)));
    }
  }
  auto start = Clock::now();
  auto s = open_or_die(path);
  double open_s = seconds_since(start);
  auto load_start = Clock::now();
  auto snap = s->load();
  double load_s = seconds_since(load_start);
  if (!snap || snap->leases.size() != leases) {
    std::fprintf(stderr, "bench_store: recovery loaded %zu leases, not %llu\n", snap ? snap->leases.size() : 0,
                 static_cast<unsigned long long>(leases));
    std::exit(1);
  }
  std::printf("recovery of %llu leases (with %llu events, 2000 VMs, 100 hosts; file %.1f MiB):\n",
              static_cast<unsigned long long>(leases), static_cast<unsigned long long>(snap->last_event_seq),
              static_cast<double>(std::filesystem::file_size(path)) / (1 << 20));
  std::printf("  open (integrity_check, foreign_key_check): %.3f s\n", open_s);
  std::printf("  load():                                    %.3f s\n", load_s);
  std::printf("  open + load:                               %.3f s  (target < 0.5 s)\n", open_s + load_s);
}

}  // namespace

int main(int argc, char** argv) {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = tmp && *tmp ? tmp : "/tmp";
  std::uint64_t n = 200000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--dir") == 0) base = argv[i + 1];
    else if (std::strcmp(argv[i], "--transitions") == 0) n = std::strtoull(argv[i + 1], nullptr, 10);
  }
  std::string dir = base + "/memlend-bench-store-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  set_log_sink([](LogLevel level, const std::string& m) {
    if (level != LogLevel::notice) std::fprintf(stderr, "bench_store: %s\n", m.c_str());
  });

  std::printf("bench_store: SQLite %s, WAL, synchronous=FULL, database in %s\n", sqlite3_libversion(), dir.c_str());
  std::printf("durable transitions (one lease step + its event per batch):\n");
  double best = 0;
  for (int producers : {1, 4}) {
    Rate r = group_commit(dir + "/group" + std::to_string(producers) + ".db", n, producers);
    best = std::max(best, r.per_second());
    std::printf("  group commit, %d submitting thread%s: %8llu in %6.2f s = %9.0f/s  (%llu commits, %.0f batches each)\n",
                producers, producers == 1 ? " " : "s", static_cast<unsigned long long>(r.n), r.seconds,
                r.per_second(), static_cast<unsigned long long>(r.commits),
                static_cast<double>(r.n) / static_cast<double>(std::max<std::uint64_t>(1, r.commits)));
  }
  std::uint64_t plain_n = std::max<std::uint64_t>(200, n / 100);
  Rate plain = one_per_batch(dir + "/plain.db", plain_n);
  std::printf("  one transaction per batch:            %8llu in %6.2f s = %9.0f/s\n",
              static_cast<unsigned long long>(plain.n), plain.seconds, plain.per_second());
  std::printf("  group commit is %.0fx faster (target: >= 50000/s)\n", best / plain.per_second());
  recovery(dir + "/recovery.db", 10000);
  std::filesystem::remove_all(dir);
  return 0;
}
