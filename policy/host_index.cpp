#include "policy/host_index.hpp"

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
    case Heuristic::best_fit: return std::max(lo_sum, x0 + y0);
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

HostIndex::HostIndex(std::size_t hosts, std::int64_t max_mem, std::int64_t max_cpu, std::size_t expected)
    : scorer_(max_mem, max_cpu),
      max_mem_(std::max<std::int64_t>(max_mem, 0)),
      max_cpu_(std::max<std::int64_t>(max_cpu, 0)),
      leaf_(hosts, 0),
      points_(hosts),
      valid_(hosts, false) {
  // About two leaves per host: small enough that a leaf rarely holds more
  // than a few hosts, bounded so that the tree stays a few MiB.
  std::size_t want = 2 * std::min(hosts, expected);
  while (depth_ < 8 && (std::size_t{1} << (2 * depth_)) < want) ++depth_;
  std::size_t total = 0;
  for (int k = 0; k <= depth_; ++k) {
    offset_.push_back(total);
    total += std::size_t{1} << (2 * k);
  }
  nodes_.assign(total, Node{});
  leaf_hosts_.resize(std::size_t{1} << (2 * depth_));
  while (leaves_ < hosts) leaves_ *= 2;
  most_.assign(2 * leaves_, Point{-1, -1});
}

void HostIndex::set_most(HostId h, Point p) {
  std::size_t node = leaves_ + h;
  most_[node] = p;
  for (node /= 2; node >= 1; node /= 2) {
    const Point &l = most_[2 * node], &r = most_[2 * node + 1];
    Point up{std::max(l.mem, r.mem), std::max(l.cpu, r.cpu)};
    if (up.mem == most_[node].mem && up.cpu == most_[node].cpu) break;
    most_[node] = up;
  }
}

std::uint32_t HostIndex::leaf_of(Point p) const {
  auto cell = [&](std::int64_t v, std::int64_t max) {
    std::int64_t side = std::int64_t{1} << depth_;
    std::int64_t c = std::clamp<std::int64_t>(v, 0, max) * side / (max + 1);
    return static_cast<std::uint32_t>(std::min(c, side - 1));
  };
  return (cell(p.cpu, max_cpu_) << depth_) | cell(p.mem, max_mem_);
}

void HostIndex::widen(Node& n, Point p) const {
  n.lo = {std::min(n.lo.mem, p.mem), std::min(n.lo.cpu, p.cpu)};
  n.hi = {std::max(n.hi.mem, p.mem), std::max(n.hi.cpu, p.cpu)};
  double s = scorer_.sum(p);
  n.lo_sum = std::min(n.lo_sum, s);
  n.hi_sum = std::max(n.hi_sum, s);
}

void HostIndex::update_leaf(std::uint32_t leaf, std::optional<Point> gone, std::optional<Point> added) {
  const auto& list = leaf_hosts_[leaf];
  std::uint32_t x = leaf & ((1u << depth_) - 1), y = leaf >> depth_;
  Node& n = nodes_[at(depth_, x, y)];
  // Only a point that leaves the edge of a leaf's box can shrink it; the
  // rest is kept up to date in constant time, so a crowded leaf costs its
  // hosts one at a time rather than all at each change.
  bool one_point = n.lo.mem == n.hi.mem && n.lo.cpu == n.hi.cpu;
  bool shrinks = gone && (list.size() <= 4 || !one_point) &&
                 (gone->mem == n.lo.mem || gone->mem == n.hi.mem || gone->cpu == n.lo.cpu || gone->cpu == n.hi.cpu ||
                  scorer_.sum(*gone) == n.lo_sum || scorer_.sum(*gone) == n.hi_sum);
  if (list.empty()) {
    n = Node{};
  } else if (shrinks) {
    n = Node{};
    for (HostId h : list) widen(n, points_[h]);
  } else if (added) {
    widen(n, *added);
  }
  n.count = static_cast<std::uint32_t>(list.size());
  n.min_id = list.empty() ? no_host : list.front();
  for (int level = depth_ - 1; level >= 0; --level) {
    x /= 2;
    y /= 2;
    Node& up = nodes_[at(level, x, y)];
    Node old = up;
    up = Node{};
    for (std::uint32_t dy = 0; dy < 2; ++dy)
      for (std::uint32_t dx = 0; dx < 2; ++dx) {
        const Node& k = nodes_[at(level + 1, 2 * x + dx, 2 * y + dy)];
        if (k.count == 0) continue;
        up.lo = {std::min(up.lo.mem, k.lo.mem), std::min(up.lo.cpu, k.lo.cpu)};
        up.hi = {std::max(up.hi.mem, k.hi.mem), std::max(up.hi.cpu, k.hi.cpu)};
        up.lo_sum = std::min(up.lo_sum, k.lo_sum);
        up.hi_sum = std::max(up.hi_sum, k.hi_sum);
        up.min_id = std::min(up.min_id, k.min_id);
        ++up.count;
      }
    // Above a node that did not change, nothing does.
    if (same(up, old)) break;
  }
}

void HostIndex::insert(HostId h) {
  set_most(h, points_[h]);
  std::uint32_t leaf = leaf_of(points_[h]);
  auto& list = leaf_hosts_[leaf];
  list.insert(std::lower_bound(list.begin(), list.end(), h), h);
  leaf_[h] = leaf;
  update_leaf(leaf, std::nullopt, points_[h]);
}

void HostIndex::remove(HostId h) {
  set_most(h, Point{-1, -1});
  auto& list = leaf_hosts_[leaf_[h]];
  list.erase(std::lower_bound(list.begin(), list.end(), h));
  update_leaf(leaf_[h], points_[h], std::nullopt);
}

void HostIndex::set(HostId h, Point p) {
  if (valid_[h]) {
    Point old = points_[h];
    if (old.mem == p.mem && old.cpu == p.cpu) return;
    if (leaf_of(p) == leaf_[h]) {
      points_[h] = p;
      set_most(h, p);
      update_leaf(leaf_[h], old, p);
      return;
    }
    remove(h);
  }
  points_[h] = p;
  valid_[h] = true;
  insert(h);
}

void HostIndex::clear(HostId h) {
  if (!valid_[h]) return;
  valid_[h] = false;
  remove(h);
}

LinearHostIndex::LinearHostIndex(std::size_t hosts, std::int64_t max_mem, std::int64_t max_cpu, std::size_t)
    : scorer_(max_mem, max_cpu), points_(hosts), valid_(hosts, false) {}

}  // namespace memlend::policy
