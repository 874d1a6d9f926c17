#include "metrics/metrics.hpp"
#include "metrics/process.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <array>
#include <utility>

namespace memlend::metrics {

namespace pm = prometheus;

void Counter::inc(double by) const {
  if (c_) c_->Increment(by);
}
double Counter::value() const { return c_ ? c_->Value() : 0; }

void Gauge::set(double v) const {
  if (g_) g_->Set(v);
}
void Gauge::inc(double by) const {
  if (g_) g_->Increment(by);
}
void Gauge::dec(double by) const {
  if (g_) g_->Decrement(by);
}
double Gauge::value() const { return g_ ? g_->Value() : 0; }

void Histogram::observe(double seconds) const {
  if (h_) h_->Observe(seconds);
}
void Histogram::observe_since(Clock::time_point start) const {
  observe(std::chrono::duration<double>(Clock::now() - start).count());
}
void Histogram::observe_counts(const std::vector<std::pair<double, std::uint64_t>>& counts,
                               double sum_seconds) const {
  if (!h_) return;
  // The bounds, +Inf last, are what Collect() reports; prometheus-cpp keeps no other accessor.
  const auto buckets = h_->Collect().histogram.bucket;
  std::vector<double> increments(buckets.size(), 0.0);
  bool any = false;
  for (const auto& [upper, n] : counts) {
    if (n == 0) continue;
    std::size_t i = 0;
    while (i + 1 < buckets.size() && buckets[i].upper_bound < upper) ++i;
    increments[i] += static_cast<double>(n);
    any = true;
  }
  if (any) h_->ObserveMultiple(increments, sum_seconds);
}

std::string_view to_string(LeaseRelease r) {
  switch (r) {
    case LeaseRelease::demand_fell: return "demand_fell";
    case LeaseRelease::vm_migrated: return "vm_migrated";
    case LeaseRelease::rehomed: return "rehomed";
    case LeaseRelease::reclaimed: return "reclaimed";
  }
  return "unknown";
}

std::string_view to_string(LeaseFailure f) {
  switch (f) {
    case LeaseFailure::donor_refused: return "donor_refused";
    case LeaseFailure::platform_refused: return "platform_refused";
    case LeaseFailure::donor_down: return "donor_down";
    case LeaseFailure::data_path: return "data_path";
  }
  return "unknown";
}

namespace {

constexpr std::array all_releases{LeaseRelease::demand_fell, LeaseRelease::vm_migrated, LeaseRelease::rehomed,
                                  LeaseRelease::reclaimed};
constexpr std::array all_failures{LeaseFailure::donor_refused, LeaseFailure::platform_refused,
                                  LeaseFailure::donor_down, LeaseFailure::data_path};
constexpr std::array all_kinds{policy::DecisionKind::none, policy::DecisionKind::remote_memory,
                               policy::DecisionKind::migrate, policy::DecisionKind::recommend_migration,
                               policy::DecisionKind::unsatisfied};
constexpr std::array all_transports{policy::Transport::rdma, policy::Transport::tcp};

// A decision is in-memory arithmetic over tens of hosts: microseconds, with a
// tail up to a second when the planner waits on two-phase reservations.
const pm::Histogram::BucketBoundaries decision_buckets{1e-5,  2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3,
                                                       5e-3, 0.01,   0.025, 0.05, 0.1,   0.25, 0.5,  1};
// A SQLite WAL commit is an fsync: a fraction of a millisecond on NVMe, up to
// seconds on a struggling disk.
const pm::Histogram::BucketBoundaries commit_buckets{1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01,
                                                     0.025, 0.05,  0.1,  0.25, 0.5,    1,    2.5};
// One page fault served over RDMA takes microseconds; over TCP, tens of them
// to milliseconds.
const pm::Histogram::BucketBoundaries fault_buckets{2e-6,   5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4,
                                                    5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05};

template <class Builder>
auto& make(Builder b, pm::Registry& r, const std::string& name, const std::string& help) {
  return b.Name(name).Help(help).Register(r);
}

}  // namespace

namespace {

class Served final : public pm::Collectable {
 public:
  explicit Served(std::shared_ptr<pm::Registry> r) : registry_(std::move(r)) {}
  std::vector<pm::MetricFamily> Collect() const override {
    auto out = registry_->Collect();
    for (auto& f : process_families()) out.push_back(std::move(f));
    return out;
  }

 private:
  std::shared_ptr<pm::Registry> registry_;
};

}  // namespace

struct Registry::Families {
  pm::Family<pm::Gauge>* build_info = nullptr;
  pm::Family<pm::Gauge>* host_up = nullptr;
  pm::Family<pm::Gauge>* memory_capacity;
  pm::Family<pm::Gauge>* memory_used;
  pm::Family<pm::Gauge>* memory_lent;
  pm::Family<pm::Gauge>* memory_borrowed;
  pm::Family<pm::Gauge>* cpu_capacity;
  pm::Family<pm::Gauge>* cpu_used;
  pm::Family<pm::Gauge>* leases;
  pm::Family<pm::Gauge>* mirror_lag;
  pm::Family<pm::Counter>* actor_restarts = nullptr;
  Counter mirror_written;
  Gauge mirror_lag_total;

  std::array<Counter, all_transports.size()> lease_grants;
  std::array<Counter, all_releases.size()> lease_releases;
  std::array<Counter, all_failures.size()> lease_failures;
  Gauge mirrors_active;
  Counter failovers;
  Counter mirror_failures;
  Counter memory_lost;
  Counter detections;
  std::array<Counter, all_kinds.size()> decisions;
  Gauge vms_unsatisfied;
  Counter recommendations;
  Gauge recommendations_outstanding;
  Histogram decision_duration;
  Histogram store_commit_duration;
  std::array<DataPathMetrics, all_transports.size()> data_path;
};

Registry::Registry(std::string_view version, std::string_view role)
    : registry_(std::make_shared<pm::Registry>()),
      served_(std::make_shared<Served>(registry_)),
      f_(std::make_unique<Families>()) {
  auto& r = *registry_;
  auto gauge = [&](const std::string& name, const std::string& help) {
    return &make(pm::BuildGauge(), r, name, help);
  };
  auto counter = [&](const std::string& name, const std::string& help) {
    return &make(pm::BuildCounter(), r, name, help);
  };
  auto histogram = [&](const std::string& name, const std::string& help) {
    return &make(pm::BuildHistogram(), r, name, help);
  };
  auto& f = *f_;

  f.build_info = gauge("memlend_build_info",
                       "Always 1; the version label says which memlend is running, role whether it is the "
                       "controller or an agent.");
  f.build_info->Add({{"version", std::string(version)}, {"role", std::string(role)}}).Set(1);

  // The data path's families are every role's.
  auto* faults = counter("memlend_datapath_page_faults_total", "Page faults on remote memory, by transport.");
  auto* read = counter("memlend_datapath_read_bytes_total", "Bytes fetched from donors, by transport.");
  auto* written = counter("memlend_datapath_written_bytes_total", "Bytes written back to donors, by transport.");
  auto* fault_time = histogram("memlend_datapath_fault_duration_seconds",
                               "Time to serve one page fault on remote memory, by transport.");
  for (auto t : all_transports) {
    pm::Labels l{{"transport", std::string(policy::to_string(t))}};
    f.data_path[static_cast<std::size_t>(t)] = DataPathMetrics{Counter(&faults->Add(l)), Counter(&read->Add(l)),
                                                               Counter(&written->Add(l)),
                                                               Histogram(&fault_time->Add(l, fault_buckets))};
  }
  f.mirror_written = Counter(&counter("memlend_datapath_mirror_written_bytes_total",
                                      "Bytes written to mirror files on the shared datastore.")->Add({}));
  f.mirror_lag_total = Gauge(&gauge("memlend_datapath_mirror_lag_bytes",
                                    "Remote memory written back to donors and not yet to its mirror files.")->Add({}));
  if (role == "agent") return;

  f.host_up = gauge("memlend_host_up", "1 when the host is up, 0 when it is down.");
  f.memory_capacity = gauge("memlend_host_memory_capacity_bytes", "Memory the host has for VMs, after the hypervisor.");
  f.memory_used = gauge("memlend_host_memory_used_bytes", "Memory the local shares of the host's own VMs use.");
  f.memory_lent = gauge("memlend_host_memory_lent_bytes", "Memory the host lends to VMs of other hosts.");
  f.memory_borrowed =
      gauge("memlend_host_memory_borrowed_bytes", "Memory the VMs on the host borrow from other hosts.");
  f.cpu_capacity = gauge("memlend_host_cpu_capacity_hertz", "CPU the host has for VMs.");
  f.cpu_used = gauge("memlend_host_cpu_used_hertz", "CPU the host's VMs use.");
  f.leases = gauge("memlend_leases",
                   "Leases the host lends, as the donor, by state (reserving, active, draining, failed).");
  f.mirror_lag = gauge("memlend_mirror_lag_bytes",
                       "Remote memory of the host's VMs written to donors but not yet to their mirrors.");

  auto* grants = counter("memlend_lease_grants_total", "Leases granted, by data-path transport.");
  for (auto t : all_transports)
    f.lease_grants[static_cast<std::size_t>(t)] = Counter(&grants->Add({{"transport", std::string(policy::to_string(t))}}));
  auto* releases = counter("memlend_lease_releases_total", "Leases ended, by reason.");
  for (auto x : all_releases)
    f.lease_releases[static_cast<std::size_t>(x)] = Counter(&releases->Add({{"reason", std::string(to_string(x))}}));
  auto* failures = counter("memlend_lease_failures_total", "Leases that could not be made or kept, by reason.");
  for (auto x : all_failures)
    f.lease_failures[static_cast<std::size_t>(x)] = Counter(&failures->Add({{"reason", std::string(to_string(x))}}));

  f.mirrors_active = Gauge(&gauge("memlend_mirrors_active", "Mirror files on the shared datastore.")->Add({}));
  f.failovers = Counter(&counter("memlend_failovers_total",
                                 "Times a VM's reads switched to its mirror because its donor failed.")->Add({}));
  f.mirror_failures = Counter(&counter("memlend_mirror_failures_total",
                                       "Times a VM's mirror could not be written (a full or failing datastore): "
                                       "until the VM borrows anew, a donor's failure loses memory.")->Add({}));
  f.memory_lost = Counter(&counter("memlend_memory_lost_total",
                                   "Times a donor failed while the mirror of a VM it lent to was not a copy: "
                                   "that memory is lost.")->Add({}));
  f.detections = Counter(&counter("memlend_detections_total",
                                  "Needs for memory or CPU detected (after detect_samples samples).")->Add({}));
  auto* decisions = counter("memlend_decisions_total", "Decisions made, by kind.");
  for (auto k : all_kinds)
    f.decisions[static_cast<std::size_t>(k)] = Counter(&decisions->Add({{"kind", std::string(policy::to_string(k))}}));
  f.vms_unsatisfied = Gauge(&gauge("memlend_vms_unsatisfied", "VMs whose latest need could not be met.")->Add({}));
  f.recommendations = Counter(&counter("memlend_recommendations_total",
                                       "Recommendations to migrate a VM to its donor.")->Add({}));
  f.recommendations_outstanding = Gauge(&gauge("memlend_recommendations_outstanding",
                                               "Recommendations issued and not yet acted on or withdrawn.")->Add({}));
  f.decision_duration = Histogram(&histogram("memlend_decision_duration_seconds",
                                             "Time from a need reaching the planner to its decision being carried out.")
                                       ->Add({}, decision_buckets));
  f.store_commit_duration = Histogram(&histogram("memlend_store_commit_duration_seconds",
                                                 "Time to commit one transaction to the store.")
                                           ->Add({}, commit_buckets));
  f.actor_restarts = counter("memlend_actor_restarts_total", "Actors restarted by the supervisor, by actor kind.");

  for (auto kind : restartable_actor_kinds) actor_restarts(kind);
}

Registry::~Registry() = default;

HostMetrics Registry::host(std::string_view name) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!f_->host_up) return {};
  if (auto it = hosts_.find(name); it != hosts_.end()) return it->second;
  pm::Labels l{{"host", std::string(name)}};
  auto& f = *f_;
  HostMetrics m{Gauge(&f.host_up->Add(l)),     Gauge(&f.memory_capacity->Add(l)), Gauge(&f.memory_used->Add(l)),
                Gauge(&f.memory_lent->Add(l)), Gauge(&f.memory_borrowed->Add(l)), Gauge(&f.cpu_capacity->Add(l)),
                Gauge(&f.cpu_used->Add(l)),    {},                                Gauge(&f.mirror_lag->Add(l))};
  for (auto s : lease_gauge_states) {
    pm::Labels ls = l;
    ls.emplace("state", std::string(to_string(s)));
    m.leases_in(s) = Gauge(&f.leases->Add(ls));
  }
  hosts_.emplace(std::string(name), m);
  return m;
}

Counter Registry::lease_grants(policy::Transport t) const { return f_->lease_grants.at(static_cast<std::size_t>(t)); }
Counter Registry::lease_releases(LeaseRelease r) const { return f_->lease_releases.at(static_cast<std::size_t>(r)); }
Counter Registry::lease_failures(LeaseFailure x) const { return f_->lease_failures.at(static_cast<std::size_t>(x)); }
Gauge Registry::mirrors_active() const { return f_->mirrors_active; }
Counter Registry::failovers() const { return f_->failovers; }
Counter Registry::mirror_failures() const { return f_->mirror_failures; }
Counter Registry::memory_lost() const { return f_->memory_lost; }
Counter Registry::detections() const { return f_->detections; }
Counter Registry::decisions(policy::DecisionKind k) const { return f_->decisions.at(static_cast<std::size_t>(k)); }
Gauge Registry::vms_unsatisfied() const { return f_->vms_unsatisfied; }
Counter Registry::recommendations() const { return f_->recommendations; }
Gauge Registry::recommendations_outstanding() const { return f_->recommendations_outstanding; }
Histogram Registry::decision_duration() const { return f_->decision_duration; }
Histogram Registry::store_commit_duration() const { return f_->store_commit_duration; }
DataPathMetrics Registry::data_path(policy::Transport t) const { return f_->data_path.at(static_cast<std::size_t>(t)); }
Counter Registry::mirror_written_bytes() const { return f_->mirror_written; }
Gauge Registry::mirror_lag_bytes() const { return f_->mirror_lag_total; }

Counter Registry::actor_restarts(std::string_view kind) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!f_->actor_restarts) return {};
  if (auto it = restarts_.find(kind); it != restarts_.end()) return it->second;
  Counter c(&f_->actor_restarts->Add({{"kind", std::string(kind)}}));
  restarts_.emplace(std::string(kind), c);
  return c;
}

std::string Registry::exposition() const { return pm::TextSerializer().Serialize(served_->Collect()); }

std::weak_ptr<pm::Collectable> Registry::collectable() const { return served_; }

}  // namespace memlend::metrics
