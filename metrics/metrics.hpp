// memlend's Prometheus metrics as plain C++ (no CAF, no prometheus-cpp in
// this header). One Registry makes every metric family at start-up, the way
// Zeek Broker's metric factory does, so /metrics shows every series from the
// first scrape and a typo in a name cannot appear at run time. Actors keep
// the handles it returns: each is one plain pointer to a prometheus-cpp
// metric, thread-safe to update, and valid as long as the Registry lives.
// A default-constructed handle does nothing, so code and tests that run
// without metrics need no `if`.
//
// The catalogue (names, types, labels, meaning) is in the README, "Metrics".
#pragma once

#include "policy/model.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace prometheus {
class Collectable;
class Counter;
class Gauge;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace memlend::metrics {

// Base units: the model counts MiB and MHz, Prometheus wants bytes and hertz.
inline constexpr double bytes_per_mib = 1024.0 * 1024.0;
inline constexpr double hertz_per_mhz = 1e6;
inline double bytes_of_mib(std::int64_t mib) { return static_cast<double>(mib) * bytes_per_mib; }
inline double hertz_of_mhz(std::int64_t mhz) { return static_cast<double>(mhz) * hertz_per_mhz; }

class Counter {
 public:
  Counter() = default;
  explicit Counter(prometheus::Counter* c) : c_(c) {}
  void inc(double by = 1) const;
  double value() const;  // 0 for an unbound handle
  explicit operator bool() const { return c_ != nullptr; }

 private:
  prometheus::Counter* c_ = nullptr;
};

class Gauge {
 public:
  Gauge() = default;
  explicit Gauge(prometheus::Gauge* g) : g_(g) {}
  void set(double v) const;
  void inc(double by = 1) const;
  void dec(double by = 1) const;
  void set_mib(std::int64_t mib) const { set(bytes_of_mib(mib)); }
  void set_mhz(std::int64_t mhz) const { set(hertz_of_mhz(mhz)); }
  double value() const;
  explicit operator bool() const { return g_ != nullptr; }

 private:
  prometheus::Gauge* g_ = nullptr;
};

class Histogram {
 public:
  using Clock = std::chrono::steady_clock;
  Histogram() = default;
  explicit Histogram(prometheus::Histogram* h) : h_(h) {}
  void observe(double seconds) const;
  // Observes the time since `start`: the usual way to time a decision or a commit.
  void observe_since(Clock::time_point start) const;
  // Adds what another histogram observed (the data path keeps its own, finer
  // one): each (upper bound, count) pair, in seconds, lands in the first
  // bucket whose bound is at least that upper bound, so no value is reported
  // lower than it was, and none more than one of the source's buckets higher.
  void observe_counts(const std::vector<std::pair<double, std::uint64_t>>& counts, double sum_seconds) const;
  explicit operator bool() const { return h_ != nullptr; }

 private:
  prometheus::Histogram* h_ = nullptr;
};

// Why a lease ended normally.
enum class LeaseRelease {
  demand_fell,  // the VM needs less (surplus)
  vm_migrated,  // the VM moved to its donor, which now holds it locally
  rehomed,      // its donor failed and the memory now comes from another donor
  reclaimed,    // its recipient is gone and the donor took the memory back
};
// A controller that stops releases nothing: its leases stay in the store and
// a restarted controller takes them up again.
// Why a lease could not be made or kept.
enum class LeaseFailure {
  donor_refused,     // phase one: the donor's own ledger said no
  platform_refused,  // the platform would not move the VM the leases were made for
  donor_down,        // its donor went down while the lease was active
  data_path,         // the data-path connection failed
};
// A store that cannot record a lease stops the controller (nothing is carried
// out unrecorded), so that is no lease failure but an exit and a log line.
std::string_view to_string(LeaseRelease r);
std::string_view to_string(LeaseFailure f);

// One host's series, labelled host="<name>".
// The lease states a donor's gauge counts; a released lease is gone.
inline constexpr std::array<LeaseState, 4> lease_gauge_states{LeaseState::reserving, LeaseState::active,
                                                              LeaseState::draining, LeaseState::failed};
constexpr std::size_t lease_gauge_index(LeaseState s) {
  for (std::size_t i = 0; i < lease_gauge_states.size(); ++i)
    if (lease_gauge_states[i] == s) return i;
  return 0;
}

struct HostMetrics {
  Gauge up;                     // 1 up, 0 down
  Gauge memory_capacity_bytes;  // what the host has for VMs
  Gauge memory_used_bytes;      // local shares of its own VMs (and VMs arriving)
  Gauge memory_lent_bytes;      // lent to VMs of other hosts
  Gauge memory_borrowed_bytes;  // borrowed by its VMs from other hosts
  Gauge cpu_capacity_hertz;
  Gauge cpu_used_hertz;
  // Leases this host lends as the donor, by state (LeaseState but released):
  // a donor that goes down has its leases failed at once, so an alert on a
  // dead donor's leases must see the failed ones.
  std::array<Gauge, 4> leases;
  Gauge& leases_in(LeaseState s) { return leases[lease_gauge_index(s)]; }
  const Gauge& leases_in(LeaseState s) const { return leases[lease_gauge_index(s)]; }
  Gauge mirror_lag_bytes;       // written to remote memory, not yet in the mirror, of its VMs
};

// One transport's data-path series, labelled transport="rdma"|"tcp".
struct DataPathMetrics {
  Counter page_faults;
  Counter read_bytes;     // fetched from donors
  Counter written_bytes;  // written back to donors
  Histogram fault_duration;
};

// Actor kinds the supervisor restarts; their restart counters exist from the start.
inline constexpr std::string_view restartable_actor_kinds[] = {"host", "vm", "lease", "mirror"};

class Registry {
 public:
  // `role` labels memlend_build_info: "controller" or "agent", so that a
  // dashboard can list controllers alone. An agent has only the families it
  // owns (its data path, the process): the cluster's view is the
  // controller's, and zeros from every agent would only blur sums. Handles of
  // the families it lacks do nothing.
  explicit Registry(std::string_view version = "0.0.0", std::string_view role = "controller");
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // A host's series, made on first use. Hosts are few (tens), so a label each is cheap.
  HostMetrics host(std::string_view name);

  Counter lease_grants(policy::Transport t) const;
  Counter lease_releases(LeaseRelease r) const;
  Counter lease_failures(LeaseFailure f) const;
  Gauge mirrors_active() const;
  Counter failovers() const;  // a VM's reads switched to its mirror after its donor failed
  Counter mirror_failures() const;  // a VM's mirror could not be written: it is no copy any more
  Counter memory_lost() const;      // a donor failed while its VM's mirror was not a copy

  Counter detections() const;  // a VM was found to need memory or CPU (after hysteresis)
  Counter decisions(policy::DecisionKind k) const;
  Gauge vms_unsatisfied() const;  // VMs whose last need could not be met
  Counter recommendations() const;
  Gauge recommendations_outstanding() const;  // issued and not yet acted on or withdrawn
  Histogram decision_duration() const;
  Histogram store_commit_duration() const;

  // kind: one of restartable_actor_kinds, or another short fixed word (never an id).
  Counter actor_restarts(std::string_view kind);

  DataPathMetrics data_path(policy::Transport t) const;
  // Written to mirror files on the shared datastore, and the data path's
  // whole lag behind them: together, whether a mirror behind is moving or
  // stalled. Every role's, since an agent's data plane has its own mirrors.
  Counter mirror_written_bytes() const;
  Gauge mirror_lag_bytes() const;

  // The text exposition format, exactly what /metrics serves.
  std::string exposition() const;
  // For the HTTP exposer.
  std::weak_ptr<prometheus::Collectable> collectable() const;

 private:
  struct Families;
  std::shared_ptr<prometheus::Registry> registry_;
  // registry_'s families and the process's own, as served.
  std::shared_ptr<prometheus::Collectable> served_;
  std::unique_ptr<Families> f_;
  std::mutex mutex_;  // guards the maps below; metric updates need no lock
  std::map<std::string, HostMetrics, std::less<>> hosts_;
  std::map<std::string, Counter, std::less<>> restarts_;
};

}  // namespace memlend::metrics
