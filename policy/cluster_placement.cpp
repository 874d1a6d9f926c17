// The view's decisions, which change nothing: FIG. 5 for one VM, which donors
// lend and where a VM moves (by the placement heuristic), a new donor for a
// failed one, and step 4's recommendation. The bookkeeping is in cluster.cpp.
#include "policy/cluster.hpp"
#include "policy/reason_text.hpp"

#include <algorithm>
#include <map>

namespace memlend::policy {

using detail::Mhz;
using detail::Mib;
using detail::Text;
using detail::Where;

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

bool contains(const std::vector<HostId>& v, HostId h) {
  return std::find(v.begin(), v.end(), h) != v.end();
}

}  // namespace

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

// cluster.cpp instantiates the class with the members it defines; the ones
// defined here are instantiated here, so that each is instantiated once.
#define MEMLEND_PLACEMENT_MEMBERS(Index)                                                                     \
  template Transport BasicCluster<Index>::transport(HostId, HostId) const;                                  \
  template std::string BasicCluster<Index>::describe(const std::vector<LeaseGrant>&) const;                 \
  template std::pair<std::int64_t, std::int64_t> BasicCluster<Index>::need(VmId) const;                     \
  template DonorChoice BasicCluster<Index>::choose_donors(std::int64_t, HostId, DonorMode,                  \
                                                          const std::vector<HostId>&) const;                \
  template Decision BasicCluster<Index>::decide(VmId) const;                                                \
  template Decision BasicCluster<Index>::decide_remote(VmId, Decision) const;                               \
  template Decision BasicCluster<Index>::decide_migrate(VmId, Decision) const;                              \
  template DonorChoice BasicCluster<Index>::rehome_choice(VmId, HostId, std::int64_t) const;                \
  template Recommendation BasicCluster<Index>::recommendation(VmId) const;
MEMLEND_PLACEMENT_MEMBERS(HostIndex)
MEMLEND_PLACEMENT_MEMBERS(LinearHostIndex)
#undef MEMLEND_PLACEMENT_MEMBERS

}  // namespace memlend::policy
