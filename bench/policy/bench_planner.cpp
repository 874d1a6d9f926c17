// How fast the planner decides a large cluster: one whole pass (every VM
// decided in order, each seeing what the ones before it took) and the
// latency of each needy VM's decision, for Cluster (HostIndex, a tree) and, in
// the same run, for ScanCluster, the DRS-style pass that rescans every host
// for every query.
//
//   bench_planner [--hosts N [--vms N]]... [--fabrics N] [--placement H] [--donors fewest|spread]
//                 [--repeat N] [--seed N] [--no-scan]
//
// With no sizes: 1,000 hosts / 20,000 VMs and 10,000 hosts / 200,000 VMs.
#include "policy/cluster.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <time.h>

using namespace memlend::policy;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::int64_t GiB = 1024;
constexpr std::int64_t GHz = 1000;

struct Options {
  std::vector<std::pair<std::int64_t, std::int64_t>> sizes;  // (hosts, vms)
  int fabrics = 1;
  int repeat = 3;
  std::uint64_t seed = 1;
  bool scan = true;  // --no-scan: HostIndex alone, for profiling
  Heuristic placement = Heuristic::best_fit;
  DonorMode donors = DonorMode::fewest;
};

class Rng {
 public:
  explicit Rng(std::uint64_t seed) : e_(seed) {}
  std::int64_t in(std::int64_t lo, std::int64_t hi) {
    return lo + static_cast<std::int64_t>(e_() % static_cast<std::uint64_t>(hi - lo + 1));
  }
  bool chance(int percent) { return in(1, 100) <= percent; }

 private:
  std::mt19937_64 e_;
};

// A cluster with memory hot spots: half the hosts are full and hold the
// needy VMs (listed last on their host, so they get what is left), the other
// half have room, some of it stranded behind busy CPUs. Of the needy VMs,
// about 85% are short of memory only (1 to 32 GiB) and 15% of CPU too.
Scenario generate(std::int64_t hosts, std::int64_t vms, const Options& o) {
  Rng r(o.seed);
  int fabrics = o.fabrics;
  Scenario s;
  s.settings.placement = o.placement;
  s.settings.donors = o.donors;
  const std::int64_t kinds[3][2] = {{256 * GiB, 64 * GHz}, {512 * GiB, 96 * GHz}, {1024 * GiB, 128 * GHz}};
  for (std::int64_t h = 0; h < hosts; ++h) {
    Host x;
    x.name = "host" + std::to_string(h);
    const auto& k = kinds[r.in(0, 2)];
    x.memory_mib = k[0];
    x.cpu_mhz = k[1];
    x.rdma = r.chance(90);
    x.data_path = r.chance(98);
    x.up = r.chance(99);
    x.reserved_mib = r.chance(50) ? x.memory_mib / 16 : 0;
    x.fabric = fabrics > 1 ? "fabric" + std::to_string(h * fabrics / hosts) : "";
    s.hosts.push_back(x);
  }
  std::int64_t needy = vms / 10;
  std::int64_t hot = hosts / 2;
  std::vector<std::int64_t> per_host(static_cast<std::size_t>(hosts), vms / hosts);
  for (std::int64_t i = 0; i < vms % hosts; ++i) ++per_host[static_cast<std::size_t>(i)];
  std::int64_t made_needy = 0;
  for (std::int64_t h = 0; h < hosts; ++h) {
    const Host& x = s.hosts[static_cast<std::size_t>(h)];
    bool is_hot = h % 2 == 0 && h / 2 < hot;
    std::int64_t count = per_host[static_cast<std::size_t>(h)];
    // Needy VMs left to place over the hot hosts still to come.
    std::int64_t hot_left = std::max<std::int64_t>(1, (hosts - h + 1) / 2);
    std::int64_t n_needy = is_hot ? std::min(count, (needy - made_needy + hot_left - 1) / hot_left) : 0;
    std::int64_t plain = count - n_needy;
    // Plain VMs fill a hot host to about 95% and a cool one to 40-70%;
    // a few cool hosts have their CPU nearly all taken.
    std::int64_t mem_budget = is_hot ? x.memory_mib * 95 / 100 : x.memory_mib * r.in(40, 70) / 100;
    bool cpu_bound = !is_hot && r.chance(25);
    std::int64_t cpu_budget = x.cpu_mhz * (cpu_bound ? 95 : r.in(40, 75)) / 100;
    std::int64_t mem_left = x.memory_mib, cpu_left = x.cpu_mhz;
    for (std::int64_t i = 0; i < plain; ++i) {
      Vm v;
      v.name = "vm" + std::to_string(s.vms.size());
      v.host = static_cast<HostId>(h);
      std::int64_t share = plain - i;
      v.memory_mib = std::max<std::int64_t>(1 * GiB, (mem_budget - (x.memory_mib - mem_left)) / share);
      v.cpu_mhz = std::max<std::int64_t>(250, (cpu_budget - (x.cpu_mhz - cpu_left)) / share);
      v.memory_mib = std::min(v.memory_mib, std::max<std::int64_t>(0, mem_left));
      v.cpu_mhz = std::min(v.cpu_mhz, std::max<std::int64_t>(0, cpu_left));
      v.memory_mib = std::max<std::int64_t>(1, v.memory_mib);
      mem_left -= v.memory_mib;
      cpu_left -= v.cpu_mhz;
      s.vms.push_back(v);
    }
    for (std::int64_t i = 0; i < n_needy; ++i) {
      Vm v;
      v.name = "vm" + std::to_string(s.vms.size());
      v.host = static_cast<HostId>(h);
      std::int64_t local = std::max<std::int64_t>(0, mem_left) / (n_needy - i);
      v.memory_mib = local + r.in(1, 32) * GiB;
      std::int64_t cpu_local = std::max<std::int64_t>(0, cpu_left) / (n_needy - i);
      v.cpu_mhz = r.chance(15) ? cpu_local + r.in(1, 16) * GHz : std::min<std::int64_t>(cpu_local, r.in(1, 8) * GHz);
      mem_left -= local;
      cpu_left -= std::min(v.cpu_mhz, cpu_local);
      s.vms.push_back(v);
      ++made_needy;
    }
  }
  return s;
}

struct Result {
  double build_ms = 0;
  double pass_ms = 0;      // wall clock
  double pass_cpu_ms = 0;  // this thread's CPU time
  std::int64_t decisions = 0;
  std::int64_t needy = 0;
  double p50_us = 0, p99_us = 0, max_us = 0;
  double needy_ms = 0;  // the needy VMs' decisions alone, summed
  double rest_ms = 0;   // everyone else's
  std::int64_t kinds[5] = {};
  std::uint64_t fingerprint = 0;  // of every decision, to check both indexes agree
};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// On a shared machine the wall clock also counts other programs' turns;
// the thread's own CPU time does not.
double cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

std::uint64_t mix(std::uint64_t h, std::uint64_t x) { return (h ^ x) * 0x100000001b3ull; }

std::uint64_t fingerprint(const std::vector<Decision>& ds) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const auto& d : ds) {
    h = mix(h, static_cast<std::uint64_t>(d.kind));
    h = mix(h, d.target);
    h = mix(h, static_cast<std::uint64_t>(d.local_mib));
    for (const auto& l : d.leases) h = mix(mix(h, l.donor), static_cast<std::uint64_t>(l.mib));
    h = mix(h, d.reason.size());
  }
  return h;
}

template <class C>
Result measure(const Scenario& s, int repeat) {
  Result best;
  std::vector<double> passes, cpus, builds;
  for (int run = 0; run < repeat; ++run) {
    auto t0 = Clock::now();
    C c(s);
    builds.push_back(ms_since(t0));
    t0 = Clock::now();
    double c0 = cpu_ms();
    std::vector<Decision> ds = c.plan();
    cpus.push_back(cpu_ms() - c0);
    passes.push_back(ms_since(t0));
    best.fingerprint = fingerprint(ds);
    best.decisions = static_cast<std::int64_t>(ds.size());
    std::fill(std::begin(best.kinds), std::end(best.kinds), 0);
    for (const auto& d : ds) ++best.kinds[static_cast<int>(d.kind)];
  }
  std::sort(passes.begin(), passes.end());
  std::sort(cpus.begin(), cpus.end());
  std::sort(builds.begin(), builds.end());
  best.pass_ms = passes[passes.size() / 2];
  best.pass_cpu_ms = cpus[cpus.size() / 2];
  best.build_ms = builds[builds.size() / 2];

  // Latency: the same walk as plan(), one decision at a time, timing those
  // of VMs that need something.
  C c(s);
  std::vector<double> lat;
  for (VmId v : c.decision_order()) {
    auto t0 = Clock::now();
    Decision d = c.decide(v);
    c.apply(d);
    double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    if (d.extra_memory_mib > 0 || d.extra_cpu_mhz > 0) {
      lat.push_back(us);
      best.needy_ms += us / 1000;
    } else {
      best.rest_ms += us / 1000;
    }
  }
  best.needy = static_cast<std::int64_t>(lat.size());
  if (!lat.empty()) {
    std::sort(lat.begin(), lat.end());
    best.p50_us = lat[lat.size() / 2];
    best.p99_us = lat[std::min(lat.size() - 1, lat.size() * 99 / 100)];
    best.max_us = lat.back();
  }
  return best;
}

void print(const char* what, const Result& r) {
  std::printf("  %-13s %9.1f %9.2f %9.2f %12.0f %9.2f %9.2f %9.1f %10.2f %10.2f\n", what, r.build_ms, r.pass_ms,
              r.pass_cpu_ms, static_cast<double>(r.decisions) / (r.pass_cpu_ms / 1000.0), r.p50_us, r.p99_us,
              r.max_us, r.needy_ms, r.rest_ms);
}

bool parse(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    auto value = [&](std::int64_t lo) -> std::int64_t {
      if (i + 1 >= argc) return -1;
      char* end = nullptr;
      long long v = std::strtoll(argv[++i], &end, 10);
      return (*end != 0 || v < lo) ? -1 : v;
    };
    std::string a = argv[i];
    if (a == "--hosts") {
      std::int64_t h = value(1);
      if (h < 0) return false;
      o.sizes.push_back({h, 20 * h});
    } else if (a == "--vms" && !o.sizes.empty()) {
      if ((o.sizes.back().second = value(0)) < 0) return false;
    } else if (a == "--fabrics") {
      std::int64_t f = value(1);
      if (f < 0) return false;
      o.fabrics = static_cast<int>(f);
    } else if (a == "--repeat") {
      std::int64_t n = value(1);
      if (n < 0) return false;
      o.repeat = static_cast<int>(n);
    } else if (a == "--placement" && i + 1 < argc) {
      auto h = parse_heuristic(argv[++i]);
      if (!h) return false;
      o.placement = *h;
    } else if (a == "--donors" && i + 1 < argc) {
      auto d = parse_donor_mode(argv[++i]);
      if (!d) return false;
      o.donors = *d;
    } else if (a == "--no-scan") {
      o.scan = false;
    } else if (a == "--seed") {
      std::int64_t n = value(0);
      if (n < 0) return false;
      o.seed = static_cast<std::uint64_t>(n);
    } else {
      return false;
    }
  }
  if (o.sizes.empty()) o.sizes = {{1000, 20000}, {10000, 200000}};
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, o)) {
    std::fprintf(stderr, "usage: bench_planner [--hosts N [--vms N]]... [--fabrics N] [--placement H] [--donors M] [--repeat N]"
                 " [--seed N] [--no-scan]\n");
    return 2;
  }
  for (auto [hosts, vms] : o.sizes) {
    Scenario s = generate(hosts, vms, o);
    std::printf("%lld hosts, %lld VMs, %d fabric%s, placement %s, donors %s\n", static_cast<long long>(hosts),
                static_cast<long long>(vms), o.fabrics, o.fabrics == 1 ? "" : "s",
                std::string(to_string(s.settings.placement)).c_str(),
                std::string(to_string(s.settings.donors)).c_str());
    Result tree = measure<Cluster>(s, o.repeat);
    if (!o.scan) {
      print("HostIndex", measure<Cluster>(s, o.repeat));
      continue;
    }
    Result scan = measure<ScanCluster>(s, 1);
    std::printf("  decisions: %lld none, %lld remote_memory, %lld migrate, %lld recommend_migration, %lld unsatisfied"
                " (%lld needy)\n",
                static_cast<long long>(tree.kinds[0]), static_cast<long long>(tree.kinds[1]),
                static_cast<long long>(tree.kinds[2]), static_cast<long long>(tree.kinds[3]),
                static_cast<long long>(tree.kinds[4]), static_cast<long long>(tree.needy));
    std::printf("  %-13s %9s %9s %9s %12s %9s %9s %9s %10s %10s\n", "index", "build ms", "pass ms", "pass cpu",
                "decisions/s", "p50 us", "p99 us", "max us", "needy ms", "others ms");
    print("HostIndex", tree);
    print("full scan", scan);
    std::printf("  same decisions: %s; pass %.1fx faster (CPU time), needy decisions %.1fx faster, p99 %.1fx lower\n\n",
                tree.fingerprint == scan.fingerprint ? "yes" : "NO", scan.pass_cpu_ms / tree.pass_cpu_ms,
                scan.needy_ms / tree.needy_ms, scan.p99_us / tree.p99_us);
    if (tree.fingerprint != scan.fingerprint) return 1;
  }
  return 0;
}
