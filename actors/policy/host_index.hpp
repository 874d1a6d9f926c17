// Picking a host by a placement heuristic without rescanning every host.
//
// Each host is a point (free memory, free CPU). A query names what must fit
// (`need`, compared exactly in integers) and the vector the heuristic scores
// against (`want`, usually equal to need). The winner is the feasible host
// with the lowest (score, list position); scores are those of DESIGN.md with
// vectors normalised per dimension by the largest host's capacity.
//
// HostIndex keeps a segment tree over list order whose nodes hold the bounding
// box and the extremes of the best/worst-fit sum of their hosts; a query
// descends best-bound first and prunes subtrees that cannot fit or cannot
// beat the best host found so far, so it stays logarithmic in practice while
// returning exactly what a full scan (LinearHostIndex) returns.
#pragma once

#include "actors/policy/model.hpp"

#include <cstdint>
#include <limits>
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
  HostIndex(std::size_t hosts, std::int64_t max_mem, std::int64_t max_cpu);

  void set(HostId h, Point p);   // the host's free vector
  void clear(HostId h);          // the host cannot take anything
  bool valid(HostId h) const { return valid_[h]; }
  Point point(HostId h) const { return points_[h]; }
  std::size_t size() const { return n_; }

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
  };
  void pull(std::size_t node);
  template <class Filter>
  void search(const Query& q, std::size_t node, std::size_t first, std::size_t last, Filter& keep,
              double& best_score, HostId& best_host) const;
  template <class Filter>
  void search_most(std::size_t node, std::size_t first, std::size_t last, Filter& keep,
                   std::int64_t& best_mem, HostId& best_host) const;

  std::size_t n_;
  std::size_t leaves_;
  Scorer scorer_;
  std::vector<Node> tree_;
  std::vector<Point> points_;
  std::vector<bool> valid_;
};

// The obvious alternative: look at every host for every query. Kept as the
// benchmark's baseline and as the oracle the property tests compare against.
class LinearHostIndex {
 public:
  LinearHostIndex(std::size_t hosts, std::int64_t max_mem, std::int64_t max_cpu);
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
  if (n_ > 0) search(q, 1, 0, leaves_, keep, best_score, best_host);
  return best_host;
}

template <class Filter>
void HostIndex::search(const Query& q, std::size_t node, std::size_t first, std::size_t last,
                       Filter& keep, double& best_score, HostId& best_host) const {
  const Node& nd = tree_[node];
  if (nd.hi.mem < q.need.mem || nd.hi.cpu < q.need.cpu) return;  // nothing here fits
  if (last - first == 1) {
    HostId h = static_cast<HostId>(first);
    if (!keep(h)) return;
    double s = scorer_.score(q, points_[h]);
    if (best_host == no_host || s < best_score || (s == best_score && h < best_host)) {
      best_score = s;
      best_host = h;
    }
    return;
  }
  // Bounds are exact for the fit sums and within rounding for the others;
  // the slack keeps a rounding error from pruning the true winner.
  constexpr double slack = 1e-12;
  std::size_t mid = (first + last) / 2;
  std::size_t kids[2] = {2 * node, 2 * node + 1};
  std::size_t lo[2] = {first, mid};
  std::size_t hi[2] = {mid, last};
  double b[2];
  for (int i = 0; i < 2; ++i) {
    const Node& k = tree_[kids[i]];
    b[i] = (k.hi.mem < q.need.mem || k.hi.cpu < q.need.cpu)
               ? std::numeric_limits<double>::infinity()
               : scorer_.bound(q, k.lo, k.hi, k.lo_sum, k.hi_sum) - slack;
  }
  int order[2] = {0, 1};
  if (b[1] < b[0]) std::swap(order[0], order[1]);
  for (int i : order) {
    if (b[i] == std::numeric_limits<double>::infinity()) continue;
    if (best_host != no_host) {
      // A subtree after the best host must beat it; one before may tie it.
      bool after = lo[i] > best_host;
      if (b[i] > best_score || (after && b[i] >= best_score)) continue;
    }
    search(q, kids[i], lo[i], hi[i], keep, best_score, best_host);
  }
}

template <class Filter>
HostId HostIndex::most_memory(Filter&& keep) const {
  std::int64_t best_mem = -1;
  HostId best_host = no_host;
  if (n_ > 0) search_most(1, 0, leaves_, keep, best_mem, best_host);
  return best_host;
}

template <class Filter>
void HostIndex::search_most(std::size_t node, std::size_t first, std::size_t last, Filter& keep,
                            std::int64_t& best_mem, HostId& best_host) const {
  const Node& nd = tree_[node];
  if (nd.hi.mem < 0) return;
  // A subtree before the best host so far may tie it (list order wins ties).
  bool before = best_host != no_host && first < best_host;
  if (nd.hi.mem < best_mem || (!before && nd.hi.mem == best_mem)) return;
  if (last - first == 1) {
    HostId h = static_cast<HostId>(first);
    if (keep(h) && (points_[h].mem > best_mem || (points_[h].mem == best_mem && h < best_host))) {
      best_mem = points_[h].mem;
      best_host = h;
    }
    return;
  }
  std::size_t mid = (first + last) / 2;
  if (tree_[2 * node + 1].hi.mem > tree_[2 * node].hi.mem) {
    search_most(2 * node + 1, mid, last, keep, best_mem, best_host);
    search_most(2 * node, first, mid, keep, best_mem, best_host);
  } else {
    search_most(2 * node, first, mid, keep, best_mem, best_host);
    search_most(2 * node + 1, mid, last, keep, best_mem, best_host);
  }
}

}  // namespace memlend::policy
