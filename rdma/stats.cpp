#include "rdma/stats.hpp"

#include <cmath>

namespace memlend::rdma {

int LatencyHistogram::bucket_of(std::uint64_t ns) {
  if (ns < (1ull << first_power)) return 0;
  int power = 63 - __builtin_clzll(ns);
  if (power >= last_power) return bucket_count - 1;
  // The sub_buckets bits below the leading one pick the linear sub-bucket.
  int sub = static_cast<int>((ns >> (power - 3)) & (sub_buckets - 1));
  return 1 + (power - first_power) * sub_buckets + sub;
}

double LatencyHistogram::Snapshot::upper_bound_ns(int i) {
  if (i == 0) return static_cast<double>(1ull << first_power);
  if (i >= bucket_count - 1) return INFINITY;
  int power = first_power + (i - 1) / sub_buckets;
  int sub = (i - 1) % sub_buckets;
  return std::ldexp(1.0 + (sub + 1) / static_cast<double>(sub_buckets), power);
}

void LatencyHistogram::record(std::uint64_t ns) {
  counts_[static_cast<std::size_t>(bucket_of(ns))].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
}

LatencyHistogram::Snapshot LatencyHistogram::snapshot() const {
  Snapshot s;
  s.counts.resize(bucket_count);
  for (int i = 0; i < bucket_count; ++i) s.counts[static_cast<std::size_t>(i)] = counts_[static_cast<std::size_t>(i)].load(std::memory_order_relaxed);
  s.count = count_.load(std::memory_order_relaxed);
  s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  return s;
}

double LatencyHistogram::Snapshot::quantile_us(double q) const {
  std::uint64_t total = 0;
  for (auto c : counts) total += c;
  if (total == 0) return 0;
  auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(total)));
  if (rank == 0) rank = 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen < rank) continue;
    // The middle of the bucket: within half a bucket (≤ 6%) of the truth.
    double hi = upper_bound_ns(static_cast<int>(i));
    double lo = i == 0 ? 0 : upper_bound_ns(static_cast<int>(i) - 1);
    if (std::isinf(hi)) return lo / 1000;
    return (lo + hi) / 2 / 1000;
  }
  return 0;
}

void LatencyHistogram::Snapshot::merge(const Snapshot& other) {
  if (counts.size() < other.counts.size()) counts.resize(other.counts.size());
  for (std::size_t i = 0; i < other.counts.size(); ++i) counts[i] += other.counts[i];
  count += other.count;
  sum_ns += other.sum_ns;
}

}  // namespace memlend::rdma
