// What the data path's benchmarks share (bench_datapath, bench_memfile):
// percentiles, passes over memory that really read and write every word,
// first touches timed one by one, and a donor in this process on loopback.
#pragma once

#include "rdma/donor.hpp"
#include "rdma/region.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <vector>

namespace memlend::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Latency {
  double p50 = 0, p99 = 0;
};

inline Latency percentiles(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

// Of rounds: one round that met a burst of other load moves it least.
inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Sums 8 bytes at a time, so that the compiler cannot skip the reads.
inline std::uint64_t sum_all(const std::uint8_t* p, std::uint64_t bytes) {
  std::uint64_t sum = 0;
  for (std::uint64_t off = 0; off + 8 <= bytes; off += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + off, 8);
    sum += w;
  }
  asm volatile("" : : "r"(sum));
  return sum;
}

// A different word everywhere: nothing the kernel or a donor could dedupe.
inline void fill_all(std::uint8_t* p, std::uint64_t bytes, std::uint64_t seed) {
  for (std::uint64_t off = 0; off + 8 <= bytes; off += 8) {
    std::uint64_t w = off * 0x9E3779B97F4A7C15ull + seed;
    std::memcpy(p + off, &w, 8);
  }
}

// GB/s of one pass.
inline double read_all(const std::uint8_t* p, std::uint64_t bytes) {
  auto t = Clock::now();
  sum_all(p, bytes);
  return static_cast<double>(bytes) / seconds_since(t) / 1e9;
}

inline double write_all(std::uint8_t* p, std::uint64_t bytes, std::uint64_t seed) {
  auto t = Clock::now();
  fill_all(p, bytes, seed);
  return static_cast<double>(bytes) / seconds_since(t) / 1e9;
}

// Touches `samples` random 4 KiB pages, each for the first time, timing each
// touch. `cached(page)`, if given, is asked before each: a page it says is
// already local would time no fault, so it is passed over.
inline Latency random_touch(const std::uint8_t* p, std::uint64_t bytes, int samples, unsigned seed,
                            const std::function<bool(std::uint64_t)>& cached = {}) {
  std::uint64_t pages = bytes / 4096;
  std::vector<std::uint64_t> order(pages);
  for (std::uint64_t i = 0; i < pages; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(samples));
  for (std::uint64_t i = 0; i < pages && us.size() < static_cast<std::size_t>(samples); ++i) {
    if (cached && cached(order[i])) continue;
    auto t = Clock::now();
    volatile std::uint8_t b = p[order[i] * 4096];
    (void)b;
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
  }
  return percentiles(std::move(us));
}

struct Donor {
  std::shared_ptr<rdma::DonorPool> pool;
  std::unique_ptr<rdma::DonorServer> server;

  rdma::LeaseTarget lease(std::uint64_t bytes) {
    auto g = pool->grant(bytes);
    if (!g) {
      std::fprintf(stderr, "benchmark: the donor lends no %llu bytes: %s\n", static_cast<unsigned long long>(bytes),
                   g.error().message.c_str());
      std::exit(1);
    }
    return rdma::LeaseTarget{{server->address(), g->id, g->epoch, {}}, g->bytes, g->secret};
  }
};

inline Donor start_donor(std::uint64_t bytes, std::chrono::microseconds busy_poll) {
  Donor d;
  d.pool = *rdma::DonorPool::create(bytes, rdma::random_secret());
  rdma::ServerOptions so;
  so.transport = rdma::TransportKind::tcp;
  so.timeouts.busy_poll = busy_poll;
  d.server = std::move(*rdma::DonorServer::start(d.pool, so));
  return d;
}

// A region over TCP on `lease`, with cfg.timeouts; a failure ends the run.
inline std::unique_ptr<rdma::RemoteRegion> open_region(const rdma::LeaseTarget& lease, const rdma::RegionConfig& cfg) {
  auto link = rdma::connect_link(lease, rdma::TransportKind::tcp, cfg.timeouts);
  auto region = link ? rdma::RemoteRegion::create(cfg, std::move(*link))
                     : Expected<std::unique_ptr<rdma::RemoteRegion>>(link.error());
  if (!region) {
    std::fprintf(stderr, "benchmark: %s\n", region.error().message.c_str());
    std::exit(1);
  }
  return std::move(*region);
}

}  // namespace memlend::bench
