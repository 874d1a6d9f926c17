#include "actors/policy/host_index.hpp"

#include <algorithm>
#include <cmath>

namespace memlend::policy {

namespace {

// Stands in for "cannot hold this at all" (a ratio over zero free capacity),
// finite so that such hosts still order by list position.
constexpr double unusable = 1e18;

double ratio(double want, double avail) {
  if (want <= 0) return 0;
  if (avail <= 0) return unusable;
  return want / avail;
}

double cosine(double wx, double wy, double ax, double ay) {
  double wn = std::sqrt(wx * wx + wy * wy);
  double an = std::sqrt(ax * ax + ay * ay);
  if (wn == 0 || an == 0) return 0;
  return (wx * ax + wy * ay) / (wn * an);
}

double clamp_gap(double w, double lo, double hi) {
  double c = std::clamp(w, lo, hi);
  return (w - c) * (w - c);
}

}  // namespace

Scorer::Scorer(std::int64_t max_mem, std::int64_t max_cpu)
    : inv_mem_(1.0 / static_cast<double>(std::max<std::int64_t>(max_mem, 1))),
      inv_cpu_(1.0 / static_cast<double>(std::max<std::int64_t>(max_cpu, 1))) {}

double Scorer::score(const Query& q, Point a) const {
  double wx = nm(q.want.mem), wy = nc(q.want.cpu);
  double ax = nm(a.mem), ay = nc(a.cpu);
  switch (q.heuristic) {
    case Heuristic::first_fit: return 0;
    case Heuristic::best_fit: return sum(a);
    case Heuristic::worst_fit: return -sum(a);
    case Heuristic::cosine: return -cosine(wx, wy, ax, ay);
    case Heuristic::l2_diff: return (wx - ax) * (wx - ax) + (wy - ay) * (wy - ay);
    case Heuristic::l2_ratio: return ratio(wx, ax) + ratio(wy, ay);
  }
  return 0;
}

double Scorer::bound(const Query& q, Point lo, Point hi, double lo_sum, double hi_sum) const {
  // Only the part of the box that fits can hold a candidate.
  double x0 = nm(std::max(lo.mem, q.need.mem)), x1 = nm(hi.mem);
  double y0 = nc(std::max(lo.cpu, q.need.cpu)), y1 = nc(hi.cpu);
  double wx = nm(q.want.mem), wy = nc(q.want.cpu);
  switch (q.heuristic) {
    case Heuristic::first_fit: return 0;
    case Heuristic::best_fit: return lo_sum;
    case Heuristic::worst_fit: return -hi_sum;
    case Heuristic::l2_diff: return clamp_gap(wx, x0, x1) + clamp_gap(wy, y0, y1);
    case Heuristic::l2_ratio: return ratio(wx, x1) + ratio(wy, y1);
    case Heuristic::cosine: {
      if (wx == 0 && wy == 0) return 0;
      // In the positive quadrant the box's directions run from its lowest
      // corner (x1, y0) to its highest (x0, y1); the best cosine is 1 when the
      // wanted direction lies between them, else at the nearer of the two.
      bool low_zero = x1 == 0 && y0 == 0;
      bool high_zero = x0 == 0 && y1 == 0;
      if (low_zero && high_zero) return 0;
      if (low_zero) return -cosine(wx, wy, x0, y1);
      if (high_zero) return -cosine(wx, wy, x1, y0);
      double above_low = x1 * wy - y0 * wx;   // >= 0: w is at or above the low corner
      double below_high = wx * y1 - wy * x0;  // >= 0: w is at or below the high corner
      if (above_low >= 0 && below_high >= 0) return -1;
      if (above_low < 0) return -cosine(wx, wy, x1, y0);
      return -cosine(wx, wy, x0, y1);
    }
  }
  return 0;
}

HostIndex::HostIndex(std::size_t hosts, std::int64_t max_mem, std::int64_t max_cpu)
    : n_(hosts), leaves_(1), scorer_(max_mem, max_cpu), points_(hosts), valid_(hosts, false) {
  while (leaves_ < std::max<std::size_t>(hosts, 1)) leaves_ *= 2;
  tree_.assign(2 * leaves_, Node{});
}

void HostIndex::pull(std::size_t node) {
  for (node /= 2; node >= 1; node /= 2) {
    const Node& l = tree_[2 * node];
    const Node& r = tree_[2 * node + 1];
    Node& n = tree_[node];
    n.lo = {std::min(l.lo.mem, r.lo.mem), std::min(l.lo.cpu, r.lo.cpu)};
    n.hi = {std::max(l.hi.mem, r.hi.mem), std::max(l.hi.cpu, r.hi.cpu)};
    n.lo_sum = std::min(l.lo_sum, r.lo_sum);
    n.hi_sum = std::max(l.hi_sum, r.hi_sum);
  }
}

void HostIndex::set(HostId h, Point p) {
  points_[h] = p;
  valid_[h] = true;
  Node& leaf = tree_[leaves_ + h];
  leaf.lo = leaf.hi = p;
  leaf.lo_sum = leaf.hi_sum = scorer_.sum(p);
  pull(leaves_ + h);
}

void HostIndex::clear(HostId h) {
  valid_[h] = false;
  tree_[leaves_ + h] = Node{};
  pull(leaves_ + h);
}

LinearHostIndex::LinearHostIndex(std::size_t hosts, std::int64_t max_mem, std::int64_t max_cpu)
    : scorer_(max_mem, max_cpu), points_(hosts), valid_(hosts, false) {}

}  // namespace memlend::policy
