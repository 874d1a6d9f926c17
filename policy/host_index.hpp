// Picking a host by a placement heuristic without rescanning every host.
//
// Each host is a point (free memory, free CPU). A query names what must fit
// (`need`, compared exactly in integers) and the vector the heuristic scores
// against (`want`, usually equal to need). The winner is the feasible host
// with the lowest (score, list position); scores are those of DESIGN.md with
// vectors normalised per dimension by the largest host's capacity.
//
// HostIndex files hosts by their point in a quadtree over (memory, CPU)
// space, each node holding the bounding box, the extremes of the best/worst
// fit sum and the lowest list position of its hosts. A query descends the
// best bound first and prunes nodes that cannot fit or cannot beat (or tie
// with a lower position) the best host found so far. Grouping hosts by value
// rather than by list position keeps the bounds tight, so a query looks at a
// handful of nodes near the answer while returning exactly what a full scan
// (LinearHostIndex) returns. First fit, which ranks by list position alone,
// is answered by a segment tree over list positions instead.
#pragma once

#include "policy/model.hpp"

#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace memlend::policy {

struct Point {
  std::int64_t mem = 0;
  std::int64_t cpu = 0;
};

struct Query {
  Heuristic heuristic = Heuristic::best_fit;
  Point need;  // a host fits when mem >= need.mem and cpu >= need.cpu
  Point want;  // what the heuristic compares the host's free vector with
};

// Normalisation and scoring shared by both indexes, so they agree bit for bit.
class Scorer {
 public:
  Scorer(std::int64_t max_mem, std::int64_t max_cpu);
  // Lower is better. Only meaningful for points that fit.
  double score(const Query& q, Point a) const;
  // A lower bound of score() over every fitting point of the box [lo, hi].
  double bound(const Query& q, Point lo, Point hi, double lo_sum, double hi_sum) const;
  // The best/worst-fit sum a.mem/M + a.cpu/C, kept per node.
  double sum(Point a) const { return nm(a.mem) + nc(a.cpu); }

 private:
  double nm(std::int64_t v) const { return static_cast<double>(v) * inv_mem_; }
  double nc(std::int64_t v) const { return static_cast<double>(v) * inv_cpu_; }
  double inv_mem_;
  double inv_cpu_;
};

// A host may be skipped by the caller (itself, donors already chosen, hosts
// without a data path); the filter sees only hosts that fit.
struct NoFilter {
  bool operator()(HostId) const { return true; }
};

class HostIndex {
 public:
  // `expected`: about how many hosts will be in the index at once (it sizes
  // the tree); ids run below `hosts`.
  HostIndex(std::size_t hosts, std::int64_t max_mem, std::int64_t max_cpu, std::size_t expected = ~std::size_t{0});

  void set(HostId h, Point p);   // the host's free vector
  void clear(HostId h);          // the host cannot take anything
  bool valid(HostId h) const { return valid_[h]; }
  Point point(HostId h) const { return points_[h]; }
  std::size_t size() const { return points_.size(); }

  template <class Filter = NoFilter>
  HostId best(const Query& q, Filter&& keep = Filter{}) const;

  // The host with the most free memory (ties: list order), for covering a
  // need that no single host can.
  template <class Filter = NoFilter>
  HostId most_memory(Filter&& keep = Filter{}) const;

  const Scorer& scorer() const { return scorer_; }

 private:
  struct Node {
    Point lo{std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::max()};
    Point hi{-1, -1};
    double lo_sum = std::numeric_limits<double>::infinity();
    double hi_sum = -std::numeric_limits<double>::infinity();
    HostId min_id = no_host;
    // A leaf's hosts; above, its children that hold any (so that a change
    // deep down stops climbing where it changes nothing).
    std::uint32_t count = 0;
  };
  // A node is (level, x, y); level depth_ holds the leaves.
  std::size_t at(int level, std::uint32_t x, std::uint32_t y) const {
    return offset_[static_cast<std::size_t>(level)] + (static_cast<std::size_t>(y) << level) + x;
  }
  static bool same(const Node& a, const Node& b) {
    return a.lo.mem == b.lo.mem && a.lo.cpu == b.lo.cpu && a.hi.mem == b.hi.mem && a.hi.cpu == b.hi.cpu &&
           a.lo_sum == b.lo_sum && a.hi_sum == b.hi_sum && a.min_id == b.min_id && a.count == b.count;
  }
  std::uint32_t leaf_of(Point p) const;
  void insert(HostId h);
  void remove(HostId h);
  void widen(Node& n, Point p) const;
  // A leaf's hosts changed: `gone` left it (or moved within it to `added`).
  void update_leaf(std::uint32_t leaf, std::optional<Point> gone, std::optional<Point> added);
  bool fits(const Node& n, const Query& q) const { return n.hi.mem >= q.need.mem && n.hi.cpu >= q.need.cpu; }
  template <class Filter>
  void search(const Query& q, int level, std::uint32_t x, std::uint32_t y, double slack, Filter& keep,
              double& best_score, HostId& best_host) const;
  // A child worth a look, with its sort key (a bound on what it can offer).
  struct Kid {
    double key;
    HostId min_id;
    std::uint32_t x, y;
  };
  // Visits the non-empty children of a node to which `key` gives a key,
  // lowest key first.
  template <class Key, class Visit>
  void children(int level, std::uint32_t x, std::uint32_t y, Key&& key, Visit&& visit) const;
  template <class Filter>
  void search_most(int level, std::uint32_t x, std::uint32_t y, Filter& keep, std::int64_t& best_mem,
                   HostId& best_host) const;

  Scorer scorer_;
  std::int64_t max_mem_;
  std::int64_t max_cpu_;
  int depth_ = 1;
  std::vector<std::size_t> offset_;
  std::vector<Node> nodes_;
  std::vector<std::vector<HostId>> leaf_hosts_;  // per leaf, by list position
  std::vector<std::uint32_t> leaf_;              // per host, its leaf while valid
  std::vector<Point> points_;
  std::vector<bool> valid_;
  // First fit asks for the lowest list position, which value space does not
  // bound: a segment tree over list positions holding each range's largest
  // memory and CPU answers it by descending leftmost first.
  std::size_t leaves_ = 1;
  std::vector<Point> most_;
  void set_most(HostId h, Point p);
  template <class Filter>
  HostId first_fit(std::size_t node, std::size_t first, std::size_t last, const Query& q, Filter& keep) const;
};

// The obvious alternative: look at every host for every query. Kept as the
// benchmark's baseline and as the oracle the property tests compare against.
class LinearHostIndex {
 public:
  LinearHostIndex(std::size_t hosts, std::int64_t max_mem, std::int64_t max_cpu,
                  std::size_t expected = ~std::size_t{0});
  void set(HostId h, Point p) { points_[h] = p; valid_[h] = true; }
  void clear(HostId h) { valid_[h] = false; }
  bool valid(HostId h) const { return valid_[h]; }
  Point point(HostId h) const { return points_[h]; }
  std::size_t size() const { return points_.size(); }

  template <class Filter = NoFilter>
  HostId best(const Query& q, Filter&& keep = Filter{}) const {
    HostId winner = no_host;
    double winner_score = std::numeric_limits<double>::infinity();
    for (HostId h = 0; h < points_.size(); ++h) {
      if (!valid_[h] || points_[h].mem < q.need.mem || points_[h].cpu < q.need.cpu || !keep(h))
        continue;
      double s = scorer_.score(q, points_[h]);
      if (winner == no_host || s < winner_score) {
        winner = h;
        winner_score = s;
      }
    }
    return winner;
  }

  template <class Filter = NoFilter>
  HostId most_memory(Filter&& keep = Filter{}) const {
    HostId winner = no_host;
    for (HostId h = 0; h < points_.size(); ++h)
      if (valid_[h] && keep(h) && (winner == no_host || points_[h].mem > points_[winner].mem))
        winner = h;
    return winner;
  }

  const Scorer& scorer() const { return scorer_; }

 private:
  Scorer scorer_;
  std::vector<Point> points_;
  std::vector<bool> valid_;
};

// ---- templates ----

template <class Filter>
HostId HostIndex::best(const Query& q, Filter&& keep) const {
  double best_score = std::numeric_limits<double>::infinity();
  HostId best_host = no_host;
  const Node& root = nodes_[0];
  if (root.count == 0 || !fits(root, q)) return no_host;
  if (q.heuristic == Heuristic::first_fit) return first_fit(1, 0, leaves_, q, keep);
  // Fit sums are bounded exactly; the other bounds are within rounding of
  // the scores, and the slack keeps that from pruning a winner.
  bool exact = q.heuristic == Heuristic::best_fit || q.heuristic == Heuristic::worst_fit;
  search(q, 0, 0, 0, exact ? 0.0 : 1e-12, keep, best_score, best_host);
  return best_host;
}

template <class Filter>
void HostIndex::search(const Query& q, int level, std::uint32_t x, std::uint32_t y, double slack, Filter& keep,
                       double& best_score, HostId& best_host) const {
  if (level == depth_) {
    const Node& leaf = nodes_[at(level, x, y)];
    // One point for all: the first that fits and is kept wins among them.
    bool one_point = leaf.lo.mem == leaf.hi.mem && leaf.lo.cpu == leaf.hi.cpu;
    for (HostId h : leaf_hosts_[(static_cast<std::size_t>(y) << depth_) + x]) {
      Point p = points_[h];
      if (p.mem < q.need.mem || p.cpu < q.need.cpu) continue;
      double s = scorer_.score(q, p);
      if (best_host != no_host && (s > best_score || (s == best_score && h > best_host))) {
        if (one_point) return;
        continue;
      }
      if (!keep(h)) continue;
      best_score = s;
      best_host = h;
      if (one_point) return;
    }
    return;
  }
  auto bound = [&](const Node& k) -> std::optional<double> {
    if (!fits(k, q)) return std::nullopt;
    return scorer_.bound(q, k.lo, k.hi, k.lo_sum, k.hi_sum) - slack;
  };
  children(level, x, y, bound, [&](const Kid& k) {
    // A node must hold a host that beats the best, or ties it from a lower position.
    if (best_host != no_host && (k.key > best_score || (k.key >= best_score && k.min_id > best_host))) return;
    search(q, level + 1, k.x, k.y, slack, keep, best_score, best_host);
  });
}

template <class Filter>
HostId HostIndex::first_fit(std::size_t node, std::size_t first, std::size_t last, const Query& q,
                            Filter& keep) const {
  if (most_[node].mem < q.need.mem || most_[node].cpu < q.need.cpu) return no_host;
  if (last - first == 1) return keep(static_cast<HostId>(first)) ? static_cast<HostId>(first) : no_host;
  std::size_t mid = (first + last) / 2;
  HostId h = first_fit(2 * node, first, mid, q, keep);
  return h != no_host ? h : first_fit(2 * node + 1, mid, last, q, keep);
}

template <class Filter>
HostId HostIndex::most_memory(Filter&& keep) const {
  std::int64_t best_mem = -1;
  HostId best_host = no_host;
  if (nodes_[0].count > 0) search_most(0, 0, 0, keep, best_mem, best_host);
  return best_host;
}

template <class Filter>
void HostIndex::search_most(int level, std::uint32_t x, std::uint32_t y, Filter& keep, std::int64_t& best_mem,
                            HostId& best_host) const {
  if (level == depth_) {
    for (HostId h : leaf_hosts_[(static_cast<std::size_t>(y) << depth_) + x]) {
      std::int64_t m = points_[h].mem;
      if (m < best_mem || (m == best_mem && h > best_host) || !keep(h)) continue;
      best_mem = m;
      best_host = h;
    }
    return;
  }
  // Most memory first: the key is what it has, negated.
  children(level, x, y, [](const Node& k) { return std::optional<double>(-static_cast<double>(k.hi.mem)); },
           [&](const Kid& k) {
             std::int64_t hi = static_cast<std::int64_t>(-k.key);
             if (hi < best_mem || (hi == best_mem && k.min_id > best_host)) return;
             search_most(level + 1, k.x, k.y, keep, best_mem, best_host);
           });
}

template <class Key, class Visit>
void HostIndex::children(int level, std::uint32_t x, std::uint32_t y, Key&& key, Visit&& visit) const {
  Kid kids[4];
  int n = 0;
  for (std::uint32_t dy = 0; dy < 2; ++dy)
    for (std::uint32_t dx = 0; dx < 2; ++dx) {
      const Node& k = nodes_[at(level + 1, 2 * x + dx, 2 * y + dy)];
      if (k.count == 0) continue;
      if (std::optional<double> v = key(k)) kids[n++] = {*v, k.min_id, 2 * x + dx, 2 * y + dy};
    }
  // Most promising first: lowest key, then lowest list position.
  for (int i = 1; i < n; ++i)
    for (int j = i; j > 0 && (kids[j].key < kids[j - 1].key ||
                              (kids[j].key == kids[j - 1].key && kids[j].min_id < kids[j - 1].min_id));
         --j)
      std::swap(kids[j], kids[j - 1]);
  for (int i = 0; i < n; ++i) visit(kids[i]);
}

}  // namespace memlend::policy
