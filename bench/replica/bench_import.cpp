// The upgrade from one node to a cluster, in one run: a single-node store
// with N events (the retention default: a million) imported into a fresh
// 3-node dqlite cluster on loopback (Store::open_replicated with
// Replica::import_file: the file checked and opened as a controller opens
// it, every row copied in transactions of a few MiB, the file set aside),
// against copying the same file locally: byte for byte (cp), and through
// SQLite's backup, as `memlend state --export` copies a local store.
//
//   bench_import [--dir DIR] [--events N] [--latency-ms MS]
//
// DIR (default: $TMPDIR or /tmp) decides the disk. --latency-ms sets
// dqlite's network latency (Raft's election timeout is 15 times it).
#include "bench/replica/nodes.hpp"

#include "persistence/store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>

using namespace memlend::bench;
namespace store = memlend::store;

namespace {

// A controller's store after a long run: a small cluster, a few hundred
// leases, and the event log at its retention limit, written as the
// controller writes it (each batch a transaction).
void write_store(const std::string& file, long events) {
  auto s = store::Store::open(file);
  if (!s) die(s.error().message);
  store::Batch setup(0);
  setup.scenario("bench");
  for (std::uint32_t h = 0; h < 8; ++h) {
    store::HostRecord r;
    r.id = h;
    r.name = "host" + std::to_string(h);
    r.memory_mib = 524288;
    r.cpu_mhz = 64000;
    setup.put(r);
  }
  for (std::uint32_t v = 0; v < 64; ++v) {
    store::VmRecord r;
    r.id = v;
    r.name = "vm" + std::to_string(v);
    r.host = v % 8;
    r.memory_mib = 65536;
    setup.put(r);
  }
  if (auto o = (*s)->commit(std::move(setup)); !o.ok()) die(o.error);
  const long per_batch = 10000;
  std::uint64_t lease = 0;
  for (long done = 0; done < events;) {
    store::Batch b(static_cast<double>(done));
    for (long i = 0; i < per_batch && done < events; ++i, ++done) {
      store::EventRecord e;
      e.t_s = done * 0.25;
      e.event = "lease_granted";
      e.vm = "vm" + std::to_string(done % 64);
      e.host = "host" + std::to_string(done % 8);
      e.donor = "host" + std::to_string((done + 1) % 8);
      e.mib = 256;
      e.reason = e.vm + " needs 256 MiB more memory: " + e.donor + " lends it";
      b.event(e);
    }
    store::LeaseRecord l;
    l.id = ++lease;
    l.vm = static_cast<std::uint32_t>(lease % 64);
    l.recipient = l.vm % 8;
    l.donor = (l.recipient + 1) % 8;
    l.mib = 256;
    l.state = memlend::LeaseState::active;
    b.put(l);
    if (auto o = (*s)->commit(std::move(b)); !o.ok()) die(o.error);
  }
  if (auto o = (*s)->commit(std::move(store::Batch(static_cast<double>(events)).epoch(1))); !o.ok()) die(o.error);
}

double seconds_since(Clock::time_point t) { return ms_since(t) / 1000; }

}  // namespace

int main(int argc, char** argv) {
  program = "bench_import";
  store::route_sqlite_log();  // before the nodes start SQLite
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = tmp && *tmp ? tmp : "/tmp";
  long events = 1000000;
  std::optional<milliseconds> latency;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    bool has_value = i + 1 < argc;
    if (a == "--dir" && has_value) dir = argv[++i];
    else if (a == "--events" && has_value) events = std::max(1L, std::atol(argv[++i]));
    else if (a == "--latency-ms" && has_value) latency = milliseconds(std::max(1, std::atoi(argv[++i])));
    else {
      std::fprintf(stderr, "bench_import: unknown argument %s\n"
                           "usage: bench_import [--dir DIR] [--events N] [--latency-ms MS]\n", argv[i]);
      return 2;
    }
  }
  std::string root = dir + "/bench_import." + std::to_string(::getpid());
  std::filesystem::create_directories(root);
  // Forked before the store's threads start.
  auto nodes = start_cluster(root, latency);

  const std::string file = root + "/memlend.db";
  auto t = Clock::now();
  write_store(file, events);
  double wrote = seconds_since(t);
  auto bytes = std::filesystem::file_size(file);

  t = Clock::now();
  std::filesystem::copy_file(file, root + "/copy.db");
  double copied = seconds_since(t);
  double backed_up = 0;
  {
    store::Options ro;
    ro.access = store::Access::read_only;
    auto s = store::Store::open(file, ro);
    if (!s) die(s.error().message);
    t = Clock::now();
    if (auto e = (*s)->export_to(root + "/export.db"); !e) die(e.error().message);
    backed_up = seconds_since(t);
  }

  store::Replica where;
  for (const auto& n : nodes) where.members.push_back(n->address());
  where.import_file = file;
  store::set_log_sink([](store::LogLevel, const std::string&) {});
  t = Clock::now();
  auto imported = store::Store::open_replicated(where);
  double import = seconds_since(t);
  if (!imported) die(imported.error().message);
  if (!std::filesystem::exists(file + ".imported")) die("the file was not imported");
  auto snap = (*imported)->load();
  if (!snap) die(snap.error().message);
  if (snap->last_event_seq != static_cast<std::uint64_t>(events)) die("the cluster holds another number of events");
  imported->reset();

  std::printf("bench_import: a single-node store of %ld events (%.1f MiB; written in %.1f s), SQLite %s, files in %s; "
              "network latency %s\n",
              events, bytes / 1048576.0, wrote, sqlite3_libversion(), dir.c_str(),
              latency ? (std::to_string(latency->count()) + " ms").c_str() : "dqlite's default");
  std::printf("  %-58s %7.2f s  (%.0f events/s)\n", "imported into a 3-voter dqlite cluster on loopback:", import,
              events / import);
  std::printf("  %-58s %7.2f s\n", "the same file copied byte for byte (cp):", copied);
  std::printf("  %-58s %7.2f s\n", "the same file copied by SQLite's backup (state --export):", backed_up);
  nodes.clear();
  std::filesystem::remove_all(root);
  return 0;
}
