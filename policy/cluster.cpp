// The view's bookkeeping: the cluster built from a scenario, and every change
// to it (a decision carried out, a demand sample, a loan ended or moved, a
// host up or down). The decisions themselves are in cluster_placement.cpp.
#include "policy/cluster.hpp"
#include "policy/reason_text.hpp"

#include <algorithm>
#include <numeric>

namespace memlend::policy {

using detail::Mhz;
using detail::Mib;
using detail::Text;

std::string fmt_mib(std::int64_t mib) {
  Text t;
  t << Mib{mib};
  return t.take();
}

std::string fmt_mhz(std::int64_t mhz) {
  Text t;
  t << Mhz{mhz};
  return t.take();
}

std::int64_t VmState::borrowed_mib() const {
  std::int64_t sum = 0;
  for (const auto& p : borrowed) sum += p.mib;
  return sum;
}

std::int64_t VmState::borrowed_from(HostId donor) const {
  for (const auto& p : borrowed)
    if (p.donor == donor) return p.mib;
  return 0;
}

namespace {

std::int64_t largest(const std::vector<Host>& hosts, std::int64_t Host::*field) {
  std::int64_t most = 1;
  for (const auto& h : hosts) most = std::max(most, h.*field);
  return most;
}

// Adds to what `donor` lends `vm`: one part per donor, however many leases.
void add_loan(VmState& vm, HostState& donor_state, HostId donor, std::int64_t mib) {
  donor_state.lent += mib;
  auto it = std::find_if(vm.borrowed.begin(), vm.borrowed.end(),
                         [&](const RemotePart& p) { return p.donor == donor; });
  if (it == vm.borrowed.end())
    vm.borrowed.push_back({donor, mib});
  else
    it->mib += mib;
}

// Ends `mib` (all when 0) of what `donor` lends `vm`; returns how much.
std::int64_t drop_loan(VmState& vm, HostState& donor_state, HostId donor, std::int64_t mib) {
  auto it = std::find_if(vm.borrowed.begin(), vm.borrowed.end(),
                         [&](const RemotePart& p) { return p.donor == donor; });
  if (it == vm.borrowed.end()) return 0;
  std::int64_t amount = mib == 0 ? it->mib : std::min(mib, it->mib);
  it->mib -= amount;
  donor_state.lent -= amount;
  if (it->mib == 0) vm.borrowed.erase(it);
  return amount;
}

// Gives a VM its local share from what its host has left.
void serve(VmState& v, HostState& hs, const Host& h) {
  std::int64_t mem_left = std::max<std::int64_t>(0, h.memory_mib - hs.lent - hs.used_mem);
  std::int64_t cpu_left = std::max<std::int64_t>(0, h.cpu_mhz - hs.used_cpu);
  v.share_mem = std::min(std::max<std::int64_t>(0, v.demand_mem - v.borrowed_mib()), mem_left);
  v.share_cpu = std::min(v.demand_cpu, cpu_left);
  hs.used_mem += v.share_mem;
  hs.used_cpu += v.share_cpu;
}

}  // namespace

template <class Index>
BasicCluster<Index>::BasicCluster(const Scenario& s)
    : settings_(s.settings),
      hosts_(s.hosts),
      state_(s.hosts.size()),
      targets_(0, 1, 1) {
  for (HostId h = 0; h < hosts_.size(); ++h) state_[h].up = hosts_[h].up;
  vms_.reserve(s.vms.size());
  vm_names_.reserve(s.vms.size());
  for (const auto& v : s.vms) {
    VmState st;
    st.host = v.host;
    st.demand_mem = v.memory_mib;
    st.demand_cpu = v.cpu_mhz;
    st.remote_for_s = v.remote_for_s;
    st.donors = v.donors;
    for (const auto& part : v.remote) add_loan(st, state_[part.donor], part.donor, part.mib);
    vms_.push_back(std::move(st));
    vm_names_.push_back(v.name);
  }
  // Each host serves its VMs in scenario order from what it does not lend.
  for (auto& v : vms_) serve(v, state_[v.host], hosts_[v.host]);
  reindex();
}

template <class Index>
void BasicCluster<Index>::reindex() {
  max_mem_ = largest(hosts_, &Host::memory_mib);
  max_cpu_ = largest(hosts_, &Host::cpu_mhz);
  targets_ = Index(hosts_.size(), max_mem_, max_cpu_);
  fabric_hosts_.clear();
  donors_.clear();
  fabric_of_.assign(hosts_.size(), 0);
  for (HostId h = 0; h < hosts_.size(); ++h) fabric_hosts_[hosts_[h].fabric].push_back(h);
  for (const auto& [fabric, members] : fabric_hosts_) {
    for (HostId h : members) fabric_of_[h] = static_cast<std::uint32_t>(donors_.size());
    donors_.emplace_back(hosts_.size(), max_mem_, max_cpu_, members.size());
  }
  for (HostId h = 0; h < hosts_.size(); ++h) refresh(h);
}

template <class Index>
HostId BasicCluster<Index>::add_host(const Host& h) {
  auto id = static_cast<HostId>(hosts_.size());
  hosts_.push_back(h);
  HostState st;
  st.up = h.up;
  state_.push_back(st);
  // Joins are rare next to decisions: a rebuild keeps one index code path.
  reindex();
  return id;
}

template <class Index>
void BasicCluster<Index>::update_host(HostId id, const Host& facts) {
  Host& h = hosts_[id];
  // Every agent rejoins after a controller restart, mostly with the same
  // facts: only a change is worth a rebuild.
  if (h.memory_mib == facts.memory_mib && h.cpu_mhz == facts.cpu_mhz && h.rdma == facts.rdma &&
      h.data_path == facts.data_path && h.reserved_mib == facts.reserved_mib && h.fabric == facts.fabric)
    return;
  h.memory_mib = facts.memory_mib;
  h.cpu_mhz = facts.cpu_mhz;
  h.rdma = facts.rdma;
  h.data_path = facts.data_path;
  h.reserved_mib = facts.reserved_mib;
  h.fabric = facts.fabric;
  reindex();
}

template <class Index>
VmId BasicCluster<Index>::add_vm(const Vm& v) {
  auto id = static_cast<VmId>(vms_.size());
  VmState st;
  st.host = v.host;
  st.demand_mem = v.memory_mib;
  st.demand_cpu = v.cpu_mhz;
  st.donors = v.donors;
  serve(st, state_[v.host], hosts_[v.host]);
  vms_.push_back(std::move(st));
  vm_names_.push_back(v.name);
  refresh(v.host);
  return id;
}

template <class Index>
std::int64_t BasicCluster<Index>::free_local(HostId h) const {
  const HostState& s = state_[h];
  return std::max<std::int64_t>(0, hosts_[h].memory_mib - s.used_mem - s.lent);
}

template <class Index>
bool BasicCluster<Index>::can_donate(HostId h) const {
  return state_[h].up && hosts_[h].data_path;
}

template <class Index>
std::int64_t BasicCluster<Index>::lendable(HostId h) const {
  if (!can_donate(h)) return 0;
  return std::max<std::int64_t>(0, free_local(h) - hosts_[h].reserved_mib);
}

template <class Index>
std::int64_t BasicCluster<Index>::cpu_free(HostId h) const {
  return std::max<std::int64_t>(0, hosts_[h].cpu_mhz - state_[h].used_cpu);
}

template <class Index>
void BasicCluster<Index>::refresh(HostId h) {
  if (state_[h].up)
    targets_.set(h, {free_local(h), cpu_free(h)});
  else
    targets_.clear(h);
  std::int64_t lend = lendable(h);
  if (lend > 0)
    donors_[fabric_of_[h]].set(h, {lend, cpu_free(h)});
  else
    donors_[fabric_of_[h]].clear(h);
}

template <class Index>
void BasicCluster<Index>::apply(const Decision& d) {
  VmState& vm = vms_[d.vm];
  HostId home = vm.host;
  if (d.kind == DecisionKind::unsatisfied) return;  // nothing half-done
  if (d.kind == DecisionKind::migrate) {
    HostId t = d.target;
    state_[home].used_mem -= vm.share_mem;
    state_[home].used_cpu -= vm.share_cpu;
    // Memory the target already lent this VM becomes local there.
    std::int64_t folded = vm.borrowed_from(t);
    if (folded > 0) {
      state_[t].lent -= folded;
      vm.borrowed.erase(std::remove_if(vm.borrowed.begin(), vm.borrowed.end(),
                                       [&](const RemotePart& p) { return p.donor == t; }),
                        vm.borrowed.end());
    }
    vm.host = t;
    vm.share_mem = d.local_mib + folded;
    vm.share_cpu = vm.demand_cpu;
    state_[t].used_mem += vm.share_mem;
    state_[t].used_cpu += vm.share_cpu;
  } else {
    state_[home].used_mem += d.local_mib - vm.share_mem;
    vm.share_mem = d.local_mib;
    std::int64_t cpu = std::min(vm.demand_cpu, vm.share_cpu + cpu_free(home));
    state_[home].used_cpu += cpu - vm.share_cpu;
    vm.share_cpu = cpu;
  }
  for (const auto& l : d.leases) add_loan(vm, state_[l.donor], l.donor, l.mib);
  refresh(home);
  if (d.kind == DecisionKind::migrate) refresh(d.target);
  for (const auto& l : d.leases) refresh(l.donor);
}

template <class Index>
std::vector<VmId> BasicCluster<Index>::decision_order() const {
  std::vector<VmId> order(vms_.size());
  std::iota(order.begin(), order.end(), 0);
  if (settings_.order == Order::listed) return order;
  std::vector<double> key(vms_.size());
  for (VmId v = 0; v < vms_.size(); ++v) {
    double m = static_cast<double>(vms_[v].demand_mem) / static_cast<double>(max_mem_);
    double c = static_cast<double>(vms_[v].demand_cpu) / static_cast<double>(max_cpu_);
    key[v] = settings_.order == Order::ffd_prod ? m * c : m + c;
  }
  std::stable_sort(order.begin(), order.end(), [&](VmId a, VmId b) { return key[a] > key[b]; });
  return order;
}

template <class Index>
std::vector<Decision> BasicCluster<Index>::plan() {
  std::vector<Decision> out(vms_.size());
  for (VmId v : decision_order()) {
    out[v] = decide(v);
    apply(out[v]);
  }
  return out;
}

template <class Index>
void BasicCluster<Index>::set_demand(VmId v, std::int64_t mem, std::int64_t cpu) {
  VmState& vm = vms_[v];
  vm.demand_mem = mem;
  vm.demand_cpu = cpu;
  std::int64_t mem_keep = std::min(vm.share_mem, std::max<std::int64_t>(0, mem));
  std::int64_t cpu_keep = std::min(vm.share_cpu, cpu);
  state_[vm.host].used_mem -= vm.share_mem - mem_keep;
  state_[vm.host].used_cpu -= vm.share_cpu - cpu_keep;
  vm.share_mem = mem_keep;
  vm.share_cpu = cpu_keep;
  refresh(vm.host);
}

template <class Index>
void BasicCluster<Index>::observe(VmId v, HostId host, std::int64_t demand_mem, std::int64_t demand_cpu,
                                  std::int64_t local_mem, std::int64_t local_cpu) {
  VmState& vm = vms_[v];
  if (vm.host != host) return;
  vm.demand_mem = demand_mem;
  vm.demand_cpu = demand_cpu;
  if (vm.share_mem == local_mem && vm.share_cpu == local_cpu) return;
  state_[host].used_mem += local_mem - vm.share_mem;
  state_[host].used_cpu += local_cpu - vm.share_cpu;
  vm.share_mem = local_mem;
  vm.share_cpu = local_cpu;
  refresh(host);
}

template <class Index>
std::vector<RemotePart> BasicCluster<Index>::surplus(VmId v) const {
  const VmState& vm = vms_[v];
  // What the host could still give locally counts: a VM whose demand fell
  // back within its host gives back every lease.
  std::int64_t local = vm.share_mem + (state_[vm.host].up ? free_local(vm.host) : 0);
  std::int64_t spare = local + vm.borrowed_mib() - vm.demand_mem;
  std::vector<RemotePart> out;
  for (auto it = vm.borrowed.rbegin(); it != vm.borrowed.rend(); ++it) {
    if (it->mib > spare) continue;
    out.push_back(*it);
    spare -= it->mib;
  }
  return out;
}

template <class Index>
void BasicCluster<Index>::release(VmId v, HostId donor, std::int64_t mib) {
  VmState& vm = vms_[v];
  if (drop_loan(vm, state_[donor], donor, mib) == 0) return;
  if (vm.borrowed.empty()) vm.remote_for_s = 0;
  // Memory given back is taken locally where the host has room for it.
  std::int64_t want = std::max<std::int64_t>(0, vm.demand_mem - vm.share_mem - vm.borrowed_mib());
  std::int64_t grow = state_[vm.host].up ? std::min(want, free_local(vm.host)) : 0;
  vm.share_mem += grow;
  state_[vm.host].used_mem += grow;
  refresh(donor);
  refresh(vm.host);
}

template <class Index>
void BasicCluster<Index>::set_host_up(HostId h, bool up) {
  state_[h].up = up;
  refresh(h);
}

template <class Index>
void BasicCluster<Index>::rehome(VmId v, HostId failed, const std::vector<LeaseGrant>& to) {
  VmState& vm = vms_[v];
  std::int64_t moved = 0;
  for (const auto& l : to) moved += l.mib;
  // Not release(): that would also take free room on the VM's host, and
  // the new donors already cover all that moved.
  drop_loan(vm, state_[failed], failed, moved);
  refresh(failed);
  for (const auto& l : to) {
    add_loan(vm, state_[l.donor], l.donor, l.mib);
    refresh(l.donor);
  }
}

template class BasicCluster<HostIndex>;
template class BasicCluster<LinearHostIndex>;

}  // namespace memlend::policy
