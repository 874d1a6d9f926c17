// Statistics the metrics module reads: counters and a latency histogram with
// fixed buckets (Prometheus wants fixed bounds; the probe and the benchmark
// want p50/p99, which the buckets give to within a few percent).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace memlend::rdma {

// Log-linear buckets over nanoseconds: 8 per power of two from 256 ns to
// about 17 s, so any quantile is within 9% of the truth.
class LatencyHistogram {
 public:
  static constexpr int sub_buckets = 8;
  static constexpr int first_power = 8;   // 2^8 ns
  static constexpr int last_power = 34;   // 2^34 ns ≈ 17 s
  static constexpr int bucket_count = (last_power - first_power) * sub_buckets + 2;

  void record(std::uint64_t nanoseconds);

  struct Snapshot {
    std::uint64_t count = 0;
    std::uint64_t sum_ns = 0;
    std::vector<std::uint64_t> counts;  // per bucket, not cumulative
    // Upper bound of bucket i in nanoseconds (the last is +inf).
    static double upper_bound_ns(int i);
    // q in [0,1]; microseconds; 0 when empty.
    double quantile_us(double q) const;
    void merge(const Snapshot& other);
  };
  Snapshot snapshot() const;

 private:
  static int bucket_of(std::uint64_t ns);
  std::array<std::atomic<std::uint64_t>, bucket_count> counts_{};
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_ns_{0};
};

}  // namespace memlend::rdma
