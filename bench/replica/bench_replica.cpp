// The replicated store's engine against today's local store, in one run:
//   - commit latency (p50, p99) of single-row INSERT transactions, each its
//     own transaction: through a 3-node dqlite cluster on loopback (a quorum
//     of Raft logs written and synced), plain and over TLS as memlend's
//     members speak it, against a local SQLite file with the same schema, WAL
//     and synchronous=FULL (as persistence/ opens it);
//   - failover: the leader's process killed with SIGKILL, to the first write
//     the new leader commits, as a client that retries through any member
//     sees it; repeated, the killed node restarted from its data directory
//     between repetitions.
//
//   bench_replica [--dir DIR] [--commits N] [--failovers K] [--latency-ms MS]
//
// DIR (default: $TMPDIR or /tmp) decides the disk, and so what an fsync
// costs. --latency-ms sets dqlite's network latency (Raft's election timeout
// is 15 times it); without it, dqlite's own timeouts (an election after 3 s).
#include "bench/replica/nodes.hpp"

#include <sqlite3.h>

#include "persistence/store.hpp"

#include <algorithm>
#include <filesystem>
#include <thread>

using namespace memlend::bench;

namespace {

const char* const schema = "CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, name TEXT NOT NULL, data BLOB)";
const char* const insert = "INSERT INTO bench (name, data) VALUES (?, ?)";

std::vector<memlend::replica::Value> row(std::int64_t i) {
  Blob data;
  data.bytes.assign(64, static_cast<std::uint8_t>(i));
  return {Value{"lease " + std::to_string(i)}, Value{std::move(data)}};
}

struct Percentiles {
  double p50 = 0, p99 = 0, max = 0;
};

Percentiles percentiles(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<std::size_t>(q * v.size()))]; };
  return {at(0.50), at(0.99), v.back()};
}

std::vector<double> sqlite_commits(const std::string& path, int commits) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) die("open " + path);
  auto exec = [&](const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) die(std::string("sqlite: ") + (err ? err : sql));
  };
  exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL");
  exec(schema);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, insert, -1, &stmt, nullptr) != SQLITE_OK) die("prepare");
  std::vector<double> ms;
  for (int i = 0; i < commits; ++i) {
    auto values = row(i);
    const auto& name = std::get<std::string>(values[0]);
    const auto& data = std::get<Blob>(values[1]).bytes;
    auto t = Clock::now();
    sqlite3_bind_text(stmt, 1, name.c_str(), static_cast<int>(name.size()), SQLITE_TRANSIENT);
    sqlite3_bind_blob(stmt, 2, data.data(), static_cast<int>(data.size()), SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) != SQLITE_DONE) die(std::string("insert: ") + sqlite3_errmsg(db));
    sqlite3_reset(stmt);
    ms.push_back(ms_since(t));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return ms;
}

std::vector<double> dqlite_commits(Client& leader, int commits) {
  must(leader.exec(schema), "create table");
  std::vector<double> ms;
  for (int i = 0; i < commits; ++i) {
    auto values = row(i);
    auto t = Clock::now();
    must(leader.exec(insert, values), "insert through the leader");
    ms.push_back(ms_since(t));
  }
  return ms;
}

// The store's own commit of one decision as the planner makes it (a lease
// granted, with its event), through Store: group commit, its rules checked,
// and on the cluster every statement a round trip to the leader.
std::vector<double> decision_commits(memlend::store::Store& s, int commits) {
  using namespace memlend::store;
  Batch setup(0);
  for (std::uint32_t h = 0; h < 2; ++h) {
    HostRecord r;
    r.id = h;
    r.name = h == 0 ? "A" : "B";
    r.memory_mib = 65536;
    r.cpu_mhz = 16000;
    setup.put(r);
  }
  VmRecord v;
  v.name = "VM";
  v.memory_mib = 8192;
  setup.put(v);
  if (auto o = s.commit(std::move(setup)); !o.ok()) die("store: " + o.error);
  std::vector<double> ms;
  for (int i = 0; i < commits; ++i) {
    LeaseRecord l;
    l.id = static_cast<std::uint64_t>(i) + 1;
    l.donor = 1;
    l.mib = 256;
    l.state = LeaseState::active;
    EventRecord e;
    e.t_s = i;
    e.event = "lease_granted";
    e.vm = "VM";
    e.host = "A";
    e.donor = "B";
    e.mib = 256;
    e.reason = "VM needs 256 MiB more memory: B lends it";
    Batch b(i);
    b.put(l).event(e);
    auto t = Clock::now();
    if (auto o = s.commit(std::move(b)); !o.ok()) die("store: " + o.error);
    ms.push_back(ms_since(t));
  }
  return ms;
}

// The cluster's TLS, with a CA and one node's certificate made by the
// openssl tool under `dir`, as an operator makes them.
std::shared_ptr<const Tls> cluster_tls(const std::string& dir) {
  std::filesystem::create_directories(dir);
  auto run = [](const std::string& command) {
    if (std::system((command + " >/dev/null 2>&1").c_str()) != 0) die("openssl failed: " + command);
  };
  run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ca -keyout " + dir + "/ca.key -out " + dir +
      "/ca.pem");
  run("openssl req -newkey rsa:2048 -nodes -subj /CN=node -keyout " + dir + "/node.key -out " + dir + "/node.csr");
  run("openssl x509 -req -days 2 -in " + dir + "/node.csr -CA " + dir + "/ca.pem -CAkey " + dir +
      "/ca.key -CAcreateserial -out " + dir + "/node.pem");
  return must(Tls::load(dir + "/ca.pem", dir + "/node.pem", dir + "/node.key"), "the cluster's TLS");
}

std::vector<std::string> live_addresses(const std::vector<std::unique_ptr<NodeProcess>>& nodes) {
  std::vector<std::string> out;
  for (const auto& n : nodes)
    if (n->alive()) out.push_back(n->address());
  return out;
}

// Kills the leader, then writes through whoever leads next, retrying from
// the start (finding the leader) on every failure; the time from the kill to
// that write's commit.
double one_failover(std::vector<std::unique_ptr<NodeProcess>>& nodes, std::int64_t key) {
  Client old = must(connect_leader(live_addresses(nodes), "bench", milliseconds(60000)), "leader");
  for (auto& n : nodes)
    if (n->address() == old.address()) n->kill(SIGKILL);
  auto killed = Clock::now();
  for (;;) {
    if (ms_since(killed) > 120000) die("no write committed within 120 s of the leader's death");
    auto next = connect_leader(live_addresses(nodes), "bench", milliseconds(60000));
    if (!next) continue;
    if (next->exec(insert, row(key))) return ms_since(killed);
  }
}

// Until the restarted node hears from the leader: only then does the
// cluster have three live voters again.
void wait_for_leader_seen_by(const std::string& address) {
  auto until = Clock::now() + milliseconds(60000);
  while (Clock::now() < until) {
    if (auto c = Client::connect(address)) {
      if (auto l = c->leader(); l && l->id != 0) return;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  die(address + " never heard of a leader after its restart");
}

}  // namespace

int main(int argc, char** argv) {
  program = "bench_replica";
  memlend::store::route_sqlite_log();  // before the nodes start SQLite
  const char* tmp = std::getenv("TMPDIR");
  std::string dir = tmp && *tmp ? tmp : "/tmp";
  int commits = 1000, failovers = 5;
  std::optional<milliseconds> latency;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    bool has_value = i + 1 < argc;
    if (a == "--dir" && has_value) dir = argv[++i];
    else if (a == "--commits" && has_value) commits = std::max(1, std::atoi(argv[++i]));
    else if (a == "--failovers" && has_value) failovers = std::max(0, std::atoi(argv[++i]));
    else if (a == "--latency-ms" && has_value) latency = milliseconds(std::max(1, std::atoi(argv[++i])));
    else {
      std::fprintf(stderr, "bench_replica: unknown argument %s\n"
                           "usage: bench_replica [--dir DIR] [--commits N] [--failovers K] [--latency-ms MS]\n", argv[i]);
      return 2;
    }
  }
  std::string root = dir + "/bench_replica." + std::to_string(::getpid());
  std::filesystem::create_directories(root);

  // Both clusters forked before any TLS connection starts its thread.
  auto nodes = start_cluster(root, latency);
  auto tls = cluster_tls(root + "/pki");
  auto tls_nodes = start_cluster(root + "/tls", latency, tls);
  ClientOptions over_tls;
  over_tls.tls = tls;

  Percentiles local, replicated, replicated_tls, store_local, store_replicated, store_replicated_tls;
  {
    Client leader = must(connect_leader({nodes[0]->address()}, "", milliseconds(60000)), "leader");
    must(leader.open("bench"), "open");
    Client tls_leader = must(connect_leader({tls_nodes[0]->address()}, "", milliseconds(60000), over_tls), "leader");
    must(tls_leader.open("bench"), "open");
    local = percentiles(sqlite_commits(root + "/local.db", commits));
    replicated = percentiles(dqlite_commits(leader, commits));
    replicated_tls = percentiles(dqlite_commits(tls_leader, commits));

    auto file = memlend::store::Store::open(root + "/store.db");
    if (!file) die(file.error().message);
    store_local = percentiles(decision_commits(**file, commits));
    auto kept_by = [&](const std::vector<std::unique_ptr<NodeProcess>>& cluster, std::shared_ptr<const Tls> with) {
      memlend::store::Replica where;
      for (const auto& n : cluster) where.members.push_back(n->address());
      where.database = "store-bench";
      where.tls = std::move(with);
      auto kept = memlend::store::Store::open_replicated(where);
      if (!kept) die(kept.error().message);
      return percentiles(decision_commits(**kept, commits));
    };
    store_replicated = kept_by(nodes, nullptr);
    store_replicated_tls = kept_by(tls_nodes, tls);
  }
  // Gone before the failovers fork nodes again: no pump thread is left.
  tls_nodes.clear();

  std::vector<double> failover_ms;
  for (int k = 0; k < failovers; ++k) {
    failover_ms.push_back(one_failover(nodes, 1000000 + k));
    for (auto& n : nodes)
      if (!n->alive()) {
        n->start();
        wait_for_leader_seen_by(n->address());
      }
  }

  std::printf("bench_replica: dqlite (Debian's libdqlite), SQLite %s, files in %s; network latency %s\n",
              sqlite3_libversion(), dir.c_str(),
              latency ? (std::to_string(latency->count()) + " ms (election timeout " +
                         std::to_string(latency->count() * 15) + " ms)").c_str()
                      : "dqlite's default (election timeout 3000 ms)");
  std::printf("commit latency, %d single-row INSERT transactions:\n", commits);
  std::printf("  %-44s p50 %7.3f ms   p99 %7.3f ms   max %7.3f ms\n", "local SQLite file (WAL, synchronous=FULL):",
              local.p50, local.p99, local.max);
  std::printf("  %-44s p50 %7.3f ms   p99 %7.3f ms   max %7.3f ms\n", "dqlite, 3 voters on loopback, via leader:",
              replicated.p50, replicated.p99, replicated.max);
  std::printf("  %-44s p50 %7.3f ms   p99 %7.3f ms   max %7.3f ms\n", "the same, over TLS (as memlend's members):",
              replicated_tls.p50, replicated_tls.p99, replicated_tls.max);
  std::printf("a decision's commit through memlend's store (a lease granted and its event), %d times:\n", commits);
  std::printf("  %-44s p50 %7.3f ms   p99 %7.3f ms   max %7.3f ms\n", "local store file (today's):", store_local.p50,
              store_local.p99, store_local.max);
  std::printf("  %-44s p50 %7.3f ms   p99 %7.3f ms   max %7.3f ms\n", "replicated store, 3 voters on loopback:",
              store_replicated.p50, store_replicated.p99, store_replicated.max);
  std::printf("  %-44s p50 %7.3f ms   p99 %7.3f ms   max %7.3f ms\n", "the same, over TLS (as memlend's members):",
              store_replicated_tls.p50, store_replicated_tls.p99, store_replicated_tls.max);
  if (!failover_ms.empty()) {
    auto f = percentiles(failover_ms);
    std::printf("failover, leader killed (SIGKILL) -> first write committed by the new leader, %d times:\n", failovers);
    std::printf("  ");
    for (double v : failover_ms) std::printf("%.0f ms  ", v);
    std::printf("\n  median %.0f ms, max %.0f ms\n", f.p50, f.max);
  }
  nodes.clear();
  std::filesystem::remove_all(root);
  return 0;
}
