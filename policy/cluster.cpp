#include "policy/cluster.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
#include <numeric>
#include <string_view>
#include <type_traits>

namespace memlend::policy {

namespace {

struct Mib {
  std::int64_t v;
};
struct Mhz {
  std::int64_t v;
};

// Every decision of a pass carries its reason, so reasons are built without
// streams (a stream costs a locale and several allocations each): on the
// stack, then copied once into a string of the exact size.
class Text {
 public:
  Text& operator<<(std::string_view v) {
    if (big_.empty() && n_ + v.size() <= sizeof small_) {
      std::memcpy(small_ + n_, v.data(), v.size());
      n_ += v.size();
      return *this;
    }
    if (big_.empty()) big_.assign(small_, n_);
    big_.append(v);
    return *this;
  }
  Text& operator<<(const char* v) { return *this << std::string_view(v); }
  Text& operator<<(const std::string& v) { return *this << std::string_view(v); }
  template <class T, class = std::enable_if_t<std::is_integral_v<T>>>
  Text& operator<<(T v) {
    char buf[24];
    auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    return *this << std::string_view(buf, static_cast<std::size_t>(end - buf));
  }
  Text& operator<<(Mib m) {
    if (m.v != 0 && m.v % 1024 == 0) return *this << m.v / 1024 << " GiB";
    return *this << m.v << " MiB";
  }
  Text& operator<<(Mhz m) {
    if (m.v != 0 && m.v % 1000 == 0) return *this << m.v / 1000 << " GHz";
    return *this << m.v << " MHz";
  }
  std::string take() { return big_.empty() ? std::string(small_, n_) : std::move(big_); }

 private:
  char small_[256];
  std::size_t n_ = 0;
  std::string big_;  // once the reason outgrows small_
};

// "the cluster" or "fabric r1".
struct Where {
  const std::string& fabric;
};
Text& operator<<(Text& t, Where w) { return w.fabric.empty() ? t << "the cluster" : t << "fabric " << w.fabric; }

}  // namespace

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

const char* why_heuristic(Heuristic h) {
  switch (h) {
    case Heuristic::first_fit: return "the first in list order that fits";
    case Heuristic::best_fit: return "the one that fits with the least room left";
    case Heuristic::worst_fit: return "the one that fits with the most room left";
    case Heuristic::cosine: return "the one whose free vector points most nearly the way of the need";
    case Heuristic::l2_diff: return "the one whose free vector is nearest the need";
    case Heuristic::l2_ratio: return "the one with the smallest sum of need over free";
  }
  return "";
}

std::int64_t largest(const std::vector<Host>& hosts, std::int64_t Host::*field) {
  std::int64_t most = 1;
  for (const auto& h : hosts) most = std::max(most, h.*field);
  return most;
}

bool contains(const std::vector<HostId>& v, HostId h) {
  return std::find(v.begin(), v.end(), h) != v.end();
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

}  // namespace

template <class Index>
BasicCluster<Index>::BasicCluster(const Scenario& s)
    : settings_(s.settings),
      hosts_(s.hosts),
      state_(s.hosts.size()),
      max_mem_(largest(s.hosts, &Host::memory_mib)),
      max_cpu_(largest(s.hosts, &Host::cpu_mhz)),
      targets_(s.hosts.size(), max_mem_, max_cpu_),
      fabric_of_(s.hosts.size()) {
  for (HostId h = 0; h < hosts_.size(); ++h) {
    state_[h].up = hosts_[h].up;
    fabric_hosts_[hosts_[h].fabric].push_back(h);
  }
  for (const auto& [fabric, members] : fabric_hosts_) {
    for (HostId h : members) fabric_of_[h] = static_cast<std::uint32_t>(donors_.size());
    donors_.emplace_back(hosts_.size(), max_mem_, max_cpu_, members.size());
  }

  vms_.reserve(s.vms.size());
  vm_names_.reserve(s.vms.size());
  for (const auto& v : s.vms) {
    VmState st;
    st.host = v.host;
    st.demand_mem = v.memory_mib;
    st.demand_cpu = v.cpu_mhz;
    st.remote_for_s = v.remote_for_s;
    st.donors = v.donors;
    for (const auto& part : v.remote) {
      state_[part.donor].lent += part.mib;
      auto it = std::find_if(st.borrowed.begin(), st.borrowed.end(),
                             [&](const RemotePart& p) { return p.donor == part.donor; });
      if (it == st.borrowed.end())
        st.borrowed.push_back(part);
      else
        it->mib += part.mib;
    }
    vms_.push_back(std::move(st));
    vm_names_.push_back(v.name);
  }
  // Each host serves its VMs in scenario order from what it does not lend.
  for (auto& v : vms_) {
    HostState& hs = state_[v.host];
    const Host& h = hosts_[v.host];
    std::int64_t mem_left = std::max<std::int64_t>(0, h.memory_mib - hs.lent - hs.used_mem);
    std::int64_t cpu_left = std::max<std::int64_t>(0, h.cpu_mhz - hs.used_cpu);
    v.share_mem = std::min(std::max<std::int64_t>(0, v.demand_mem - v.borrowed_mib()), mem_left);
    v.share_cpu = std::min(v.demand_cpu, cpu_left);
    hs.used_mem += v.share_mem;
    hs.used_cpu += v.share_cpu;
  }
  for (HostId h = 0; h < hosts_.size(); ++h) refresh(h);
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
Transport BasicCluster<Index>::transport(HostId a, HostId b) const {
  return hosts_[a].rdma && hosts_[b].rdma ? Transport::rdma : Transport::tcp;
}

template <class Index>
std::string BasicCluster<Index>::describe(const std::vector<LeaseGrant>& leases) const {
  Text out;
  for (std::size_t i = 0; i < leases.size(); ++i) {
    if (i > 0) out << (i + 1 == leases.size() ? " and " : ", ");
    out << hosts_[leases[i].donor].name << " lends " << Mib{leases[i].mib};
  }
  bool all_rdma = std::all_of(leases.begin(), leases.end(),
                              [](const LeaseGrant& l) { return l.transport == Transport::rdma; });
  out << (all_rdma ? " over RDMA" : " (over TCP where a side has no RDMA NIC)");
  return out.take();
}

template <class Index>
std::pair<std::int64_t, std::int64_t> BasicCluster<Index>::need(VmId v) const {
  const VmState& vm = vms_[v];
  std::int64_t mem = vm.demand_mem - vm.share_mem - vm.borrowed_mib();
  std::int64_t cpu = vm.demand_cpu - vm.share_cpu;
  if (state_[vm.host].up) {
    mem -= std::min(std::max<std::int64_t>(mem, 0), free_local(vm.host));
    cpu -= std::min(std::max<std::int64_t>(cpu, 0), cpu_free(vm.host));
  }
  return {std::max<std::int64_t>(mem, 0), std::max<std::int64_t>(cpu, 0)};
}

template <class Index>
DonorChoice BasicCluster<Index>::choose_donors(std::int64_t mib, HostId recipient, DonorMode mode,
                                               const std::vector<HostId>& exclude) const {
  DonorChoice out;
  const std::string& fabric = hosts_[recipient].fabric;
  const Index& index = donors_[fabric_of_[recipient]];
  auto usable = [&](HostId h) { return h != recipient && !contains(exclude, h); };
  Where where{fabric};
  if (!hosts_[recipient].data_path) {
    out.reason = hosts_[recipient].name + " has no data path to reach remote memory over";
    return out;
  }
  if (mode == DonorMode::spread) {
    std::vector<HostId> eligible;
    std::int64_t total = 0;
    for (HostId h : fabric_hosts_.at(fabric)) {
      if (!usable(h) || lendable(h) <= 0) continue;
      eligible.push_back(h);
      total += lendable(h);
    }
    if (total < mib) {
      Text t;
      t << "every eligible donor in " << where << " together can lend only " << Mib{total} << " of " << Mib{mib};
      out.reason = t.take();
      return out;
    }
    // Water-filling: donors with less than an even share give all they have,
    // the rest split what is left evenly (list order takes the odd MiB).
    std::vector<HostId> by_room = eligible;
    std::stable_sort(by_room.begin(), by_room.end(),
                     [&](HostId a, HostId b) { return lendable(a) < lendable(b); });
    std::map<HostId, std::int64_t> give;
    std::int64_t left = mib;
    std::size_t i = 0;
    for (; i < by_room.size(); ++i) {
      std::int64_t k = static_cast<std::int64_t>(by_room.size() - i);
      if (lendable(by_room[i]) * k > left) break;
      give[by_room[i]] = lendable(by_room[i]);
      left -= lendable(by_room[i]);
    }
    std::vector<HostId> rest(by_room.begin() + static_cast<std::ptrdiff_t>(i), by_room.end());
    std::sort(rest.begin(), rest.end());
    if (!rest.empty()) {
      std::int64_t k = static_cast<std::int64_t>(rest.size());
      for (std::size_t j = 0; j < rest.size(); ++j)
        give[rest[j]] = left / k + (static_cast<std::int64_t>(j) < left % k ? 1 : 0);
    }
    for (auto [h, amount] : give)
      if (amount > 0) out.leases.push_back({h, amount, transport(h, recipient)});
    Text t;
    t << "spread evenly over every eligible donor in " << where;
    out.reason = t.take();
    return out;
  }

  // fewest: one donor if one can cover it, else the largest donors first
  // until one (chosen by the heuristic) can cover what is left.
  std::vector<HostId> chosen;
  std::int64_t left = mib;
  auto keep = [&](HostId h) { return usable(h) && !contains(chosen, h); };
  for (;;) {
    Query q{settings_.placement, {left, 0}, {left, 0}};
    HostId one = index.best(q, keep);
    if (one != no_host) {
      out.leases.push_back({one, left, transport(one, recipient)});
      break;
    }
    HostId largest = index.most_memory(keep);
    if (largest == no_host) {
      std::int64_t found = mib - left;
      out.leases.clear();
      Text t;
      t << "every eligible donor in " << where << " together can lend only " << Mib{found} << " of " << Mib{mib};
      out.reason = t.take();
      return out;
    }
    std::int64_t amount = lendable(largest);
    out.leases.push_back({largest, amount, transport(largest, recipient)});
    chosen.push_back(largest);
    left -= amount;
  }
  std::sort(out.leases.begin(), out.leases.end(),
            [](const LeaseGrant& a, const LeaseGrant& b) { return a.donor < b.donor; });
  Text t;
  if (out.leases.size() == 1)
    t << to_string(settings_.placement) << " picked " << hosts_[out.leases[0].donor].name << ", "
      << why_heuristic(settings_.placement);
  else
    t << "no single donor in " << where << " has " << Mib{mib} << ", so the " << out.leases.size()
      << " fewest that do together";
  out.reason = t.take();
  return out;
}

template <class Index>
Decision BasicCluster<Index>::decide(VmId v) const {
  const VmState& vm = vms_[v];
  Decision d;
  d.vm = v;
  d.host = vm.host;
  d.local_mib = vm.share_mem;
  const std::string& name = vm_names_[v];
  const std::string& host = hosts_[vm.host].name;
  std::int64_t buffers = static_cast<std::int64_t>(vm.borrowed.size());
  d.buffer_kib = buffers * buffer_kib_per_lease(settings_);
  d.mirror_mib = vm.borrowed_mib();
  if (!state_[vm.host].up) {
    Text why;
    why << name << " runs on " << host << ", which is down: restarting it is the HA service's work";
    d.reason = why.take();
    return d;
  }
  auto [extra_mem, extra_cpu] = need(v);
  d.extra_memory_mib = extra_mem;
  d.extra_cpu_mhz = extra_cpu;
  if (extra_cpu > 0) return decide_migrate(v, std::move(d));
  if (extra_mem > 0) return decide_remote(v, std::move(d));

  // Fits: grow locally as far as the host has room.
  std::int64_t grow = std::max<std::int64_t>(0, vm.demand_mem - vm.share_mem - vm.borrowed_mib());
  d.local_mib = vm.share_mem + grow;
  Text why;
  why << name << " needs " << Mib{vm.demand_mem} << " and " << Mhz{vm.demand_cpu}
      << "; " << host << " gives it " << Mib{d.local_mib};
  if (!vm.borrowed.empty()) why << " and it borrows " << Mib{vm.borrowed_mib()};
  why << ", which covers it";
  std::int64_t spare = d.local_mib + vm.borrowed_mib() - vm.demand_mem;
  if (spare > 0) why << " (" << Mib{spare} << " borrowed that it no longer needs)";
  if (vm.borrowed.empty()) {
    d.reason = why.take();
    return d;
  }
  if (vm.remote_for_s < settings_.migrate_after_s) {
    why << "; it has used remote memory for " << vm.remote_for_s << " s of the "
        << settings_.migrate_after_s << " s before a move is considered";
    d.reason = why.take();
    return d;
  }
  Recommendation r = recommendation(v);
  if (r.ok) {
    d.kind = DecisionKind::recommend_migration;
    d.target = r.target;
  }
  why << "; " << r.reason;
  d.reason = why.take();
  return d;
}

template <class Index>
Decision BasicCluster<Index>::decide_remote(VmId v, Decision d) const {
  const VmState& vm = vms_[v];
  const std::string& name = vm_names_[v];
  const std::string& host = hosts_[vm.host].name;
  std::int64_t local = vm.share_mem + std::min(free_local(vm.host),
                                               std::max<std::int64_t>(0, vm.demand_mem - vm.share_mem - vm.borrowed_mib()));
  Text why;
  why << name << " needs " << Mib{vm.demand_mem} << " and " << Mhz{vm.demand_cpu} << "; "
      << host << " gives it " << Mib{local};
  if (!vm.borrowed.empty()) why << " and it already borrows " << Mib{vm.borrowed_mib()};
  why << ", so it needs " << Mib{d.extra_memory_mib} << " more memory and no more CPU";
  DonorMode mode = vm.donors.value_or(settings_.donors);
  DonorChoice c = choose_donors(d.extra_memory_mib, vm.host, mode, {});
  if (c.leases.empty()) {
    d.kind = DecisionKind::unsatisfied;
    why << ", but " << c.reason;
    d.reason = why.take();
    return d;
  }
  d.kind = DecisionKind::remote_memory;
  d.local_mib = local;
  d.leases = c.leases;
  std::vector<HostId> donors;
  for (const auto& p : vm.borrowed) donors.push_back(p.donor);
  for (const auto& l : c.leases)
    if (!contains(donors, l.donor)) donors.push_back(l.donor);
  d.buffer_kib = static_cast<std::int64_t>(donors.size()) * buffer_kib_per_lease(settings_);
  d.mirror_mib = vm.borrowed_mib() + d.extra_memory_mib;
  why << ": " << describe(c.leases) << " (" << c.reason << "); a local buffer of "
      << d.buffer_kib << " KiB on " << host << " and a mirror of " << Mib{d.mirror_mib}
      << " on the shared datastore";
  d.reason = why.take();
  return d;
}

template <class Index>
Decision BasicCluster<Index>::decide_migrate(VmId v, Decision d) const {
  const VmState& vm = vms_[v];
  const std::string& name = vm_names_[v];
  const std::string& host = hosts_[vm.host].name;
  std::int64_t keep = vm.borrowed_mib();
  std::int64_t local_need = std::max<std::int64_t>(0, vm.demand_mem - keep);
  Text why;
  why << name << " needs " << Mhz{vm.demand_cpu} << " of CPU and " << host << " can give it only "
      << Mhz{vm.demand_cpu - d.extra_cpu_mhz} << ", so it must move";
  // Memory it keeps borrowing must stay in reach from the target: a data
  // path, and the donors' fabric (what a target lent it turns local).
  auto reaches_donors = [&](HostId h) {
    for (const auto& p : vm.borrowed)
      if (p.donor != h && (!hosts_[h].data_path || hosts_[p.donor].fabric != hosts_[h].fabric)) return false;
    return true;
  };
  auto not_home = [&](HostId h) { return h != vm.host && reaches_donors(h); };
  // What the VM reaches remotely from target t once moved, with `fresh` new
  // leases: what t lent it becomes local there, so it needs no buffer and
  // no mirror any more.
  auto set_remote = [&](HostId t, const std::vector<LeaseGrant>& fresh, std::int64_t fresh_mib) {
    std::int64_t donors = 0;
    for (const auto& p : vm.borrowed) donors += p.donor != t;
    for (const auto& l : fresh) donors += vm.borrowed_from(l.donor) == 0;
    d.buffer_kib = donors * buffer_kib_per_lease(settings_);
    d.mirror_mib = keep - vm.borrowed_from(t) + fresh_mib;
  };

  // A host that holds it whole, CPU and memory.
  Query whole{settings_.placement, {local_need, vm.demand_cpu}, {local_need, vm.demand_cpu}};
  HostId t = targets_.best(whole, not_home);
  if (t != no_host) {
    d.kind = DecisionKind::migrate;
    d.target = t;
    d.local_mib = local_need;
    set_remote(t, {}, 0);
    why << ": " << hosts_[t].name << " holds all of it (" << to_string(settings_.placement) << ", "
        << why_heuristic(settings_.placement) << ")";
    d.reason = why.take();
    return d;
  }
  // Else a host with the CPU and a data path, the rest of its memory lent to it there.
  std::vector<HostId> tried;
  auto candidate = [&](HostId h) {
    return h != vm.host && hosts_[h].data_path && !contains(tried, h) && reaches_donors(h);
  };
  Query cpu_only{settings_.placement, {0, vm.demand_cpu}, {local_need, vm.demand_cpu}};
  DonorMode mode = vm.donors.value_or(settings_.donors);
  std::string last_reason;
  // A handful of candidates is enough: past them, the fabric is out of memory.
  for (int attempt = 0; attempt < 8; ++attempt) {
    t = targets_.best(cpu_only, candidate);
    if (t == no_host) break;
    tried.push_back(t);
    std::int64_t local = std::min(free_local(t), local_need);
    std::int64_t rest = local_need - local;
    DonorChoice c = choose_donors(rest, t, mode, {vm.host});
    if (c.leases.empty()) {
      last_reason = hosts_[t].name + " has the CPU but " + c.reason;
      continue;
    }
    d.kind = DecisionKind::migrate;
    d.target = t;
    d.local_mib = local;
    d.leases = c.leases;
    set_remote(t, c.leases, rest);
    why << ": " << hosts_[t].name << " has the CPU (" << to_string(settings_.placement)
        << ") and gives it " << Mib{local} << "; for the other " << Mib{rest} << ", "
        << describe(c.leases) << " (" << c.reason << ")";
    d.reason = why.take();
    return d;
  }
  d.kind = DecisionKind::unsatisfied;
  if (tried.empty())
    why << ", but no other host that is up has " << Mhz{vm.demand_cpu} << " of CPU free";
  else
    why << ", but " << last_reason;
  d.reason = why.take();
  return d;
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
  for (const auto& l : d.leases) {
    state_[l.donor].lent += l.mib;
    auto it = std::find_if(vm.borrowed.begin(), vm.borrowed.end(),
                           [&](const RemotePart& p) { return p.donor == l.donor; });
    if (it == vm.borrowed.end())
      vm.borrowed.push_back({l.donor, l.mib});
    else
      it->mib += l.mib;
  }
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
DonorChoice BasicCluster<Index>::rehome_choice(VmId v, HostId failed, std::int64_t mib) const {
  const VmState& vm = vms_[v];
  // The lost lease's contents come back from the mirror as one piece, onto one
  // new lease of the same size: one donor must take all of it, whatever the
  // VM's donor mode. Donors it already borrows from may grow their loan.
  DonorChoice c = choose_donors(mib, vm.host, DonorMode::fewest, {failed});
  if (c.leases.size() > 1) {
    c.leases.clear();
    c.reason = "no single donor can take all " + fmt_mib(mib) + ", and its contents move whole from the mirror";
  }
  return c;
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
    state_[l.donor].lent += l.mib;
    auto it = std::find_if(vm.borrowed.begin(), vm.borrowed.end(),
                           [&](const RemotePart& p) { return p.donor == l.donor; });
    if (it == vm.borrowed.end())
      vm.borrowed.push_back({l.donor, l.mib});
    else
      it->mib += l.mib;
    refresh(l.donor);
  }
}

template <class Index>
Recommendation BasicCluster<Index>::recommendation(VmId v) const {
  const VmState& vm = vms_[v];
  Recommendation r;
  if (vm.borrowed.empty()) {
    r.reason = "it borrows nothing";
    r.blocker = "nothing";
    return r;
  }
  // The donor that lends it most; ties go to the donor listed first.
  const RemotePart* most = nullptr;
  for (const auto& p : vm.borrowed)
    if (!most || p.mib > most->mib || (p.mib == most->mib && p.donor < most->donor)) most = &p;
  HostId d = most->donor;
  const std::string& dn = hosts_[d].name;
  r.target = d;
  if (!state_[d].up) {
    r.reason = "its main donor " + dn + " is down";
    r.blocker = "down";
    return r;
  }
  std::int64_t room = free_local(d) + most->mib;
  std::int64_t cpu = cpu_free(d);
  if (room < vm.demand_mem) {
    r.reason = "after " + std::to_string(vm.remote_for_s) + " s on remote memory, its main donor " + dn +
               " could hold only " + fmt_mib(room) + " of its " + fmt_mib(vm.demand_mem) + ", so it stays";
    r.blocker = "memory";
    return r;
  }
  if (cpu < vm.demand_cpu) {
    r.reason = "after " + std::to_string(vm.remote_for_s) + " s on remote memory, its main donor " + dn +
               " has only " + fmt_mhz(cpu) + " of the " + fmt_mhz(vm.demand_cpu) + " of CPU it needs, so it stays";
    r.blocker = "cpu";
    return r;
  }
  r.ok = true;
  r.reason = "it has used " + dn + "'s memory for " + std::to_string(vm.remote_for_s) +
             " s (at least " + std::to_string(settings_.migrate_after_s) + " s) and " + dn +
             " can hold all of it (" + fmt_mib(room) + " and " + fmt_mhz(cpu) +
             " free for it): migrate it to " + dn;
  return r;
}

template class BasicCluster<HostIndex>;
template class BasicCluster<LinearHostIndex>;

}  // namespace memlend::policy
