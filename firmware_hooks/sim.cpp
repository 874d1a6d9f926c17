#include "firmware_hooks/platform.hpp"

#include <algorithm>
#include <map>
#include <optional>

namespace memlend::platform {

using namespace memlend::policy;

namespace {

class Sim final : public Platform {
 public:
  explicit Sim(const Scenario& s) : scenario_(s) {
    hosts_.resize(s.hosts.size());
    for (HostId h = 0; h < s.hosts.size(); ++h) hosts_[h].up = s.hosts[h].up;
    vms_.resize(s.vms.size());
    for (VmId v = 0; v < s.vms.size(); ++v) {
      const Vm& vm = s.vms[v];
      vms_[v].host = vm.host;
      vms_[v].demand_mem = vm.memory_mib;
      vms_[v].demand_cpu = vm.cpu_mhz;
      for (const auto& p : vm.remote) {
        vms_[v].remote[p.donor] += p.mib;
        hosts_[p.donor].lent += p.mib;
      }
    }
    settle();
  }

  std::string_view backend() const override { return "sim"; }

  Telemetry sample(double t_s) override { return sample_hosts(t_s, std::nullopt); }
  Telemetry sample_host(double t_s, HostId host) override { return sample_hosts(t_s, host); }

  HostId host_of(VmId vm) const override { return vms_[vm].host; }
  std::vector<RemotePart> remote_of(VmId vm) const override {
    std::vector<RemotePart> out;
    for (const auto& [donor, mib] : vms_[vm].remote) out.push_back({donor, mib});
    return out;
  }

 private:
  Telemetry sample_hosts(double t_s, std::optional<HostId> only) {
    while (next_ < scenario_.events.size() && scenario_.events[next_].at_s <= t_s) {
      const Event& e = scenario_.events[next_++];
      if (e.is_vm_event()) {
        if (e.memory_mib) vms_[e.vm].demand_mem = *e.memory_mib;
        if (e.cpu_mhz) vms_[e.vm].demand_cpu = *e.cpu_mhz;
      } else if (e.up) {
        hosts_[e.host].up = *e.up;
      }
    }
    settle();
    Telemetry t;
    t.t_s = t_s;
    for (HostId h = 0; h < hosts_.size(); ++h)
      if (!only || h == *only) t.hosts.push_back({h, hosts_[h].up, hosts_[h].used_mem, hosts_[h].used_cpu});
    for (VmId v = 0; v < vms_.size(); ++v) {
      const VmS& vm = vms_[v];
      if (only && vm.host != *only) continue;
      t.vms.push_back({v, vm.host, hosts_[vm.host].up, vm.demand_mem, vm.demand_cpu, vm.local_mem,
                       vm.local_cpu, vm.remote_total(), hosts_[vm.host].up ? free_mem(vm.host) : 0});
    }
    return t;
  }

 public:
  Expected<void> attach_remote(VmId vm, HostId donor, std::int64_t mib) override {
    if (vm >= vms_.size() || donor >= hosts_.size() || mib <= 0) return Error{"attach: bad arguments"};
    if (!hosts_[donor].up) return Error{"attach: donor " + scenario_.hosts[donor].name + " is down"};
    if (free_mem(donor) < mib)
      return Error{"attach: " + scenario_.hosts[donor].name + " has only " + std::to_string(free_mem(donor)) +
                   " MiB free"};
    vms_[vm].remote[donor] += mib;
    hosts_[donor].lent += mib;
    settle();
    return {};
  }

  Expected<void> detach_remote(VmId vm, HostId donor, std::int64_t mib) override {
    if (vm >= vms_.size() || donor >= hosts_.size()) return Error{"detach: bad arguments"};
    auto it = vms_[vm].remote.find(donor);
    if (it == vms_[vm].remote.end()) return Error{"detach: nothing lent by that donor"};
    std::int64_t amount = std::min(mib, it->second);
    it->second -= amount;
    hosts_[donor].lent -= amount;
    if (it->second == 0) vms_[vm].remote.erase(it);
    settle();
    return {};
  }

  Expected<void> migrate(VmId vm, HostId target) override {
    if (vm >= vms_.size() || target >= hosts_.size()) return Error{"migrate: bad arguments"};
    if (!hosts_[target].up) return Error{"migrate: " + scenario_.hosts[target].name + " is down"};
    VmS& v = vms_[vm];
    hosts_[v.host].used_mem -= v.local_mem;
    hosts_[v.host].used_cpu -= v.local_cpu;
    v.local_mem = v.local_cpu = 0;
    // What the target lent this VM is simply its memory now.
    auto lent = v.remote.find(target);
    if (lent != v.remote.end()) {
      hosts_[target].lent -= lent->second;
      v.remote.erase(lent);
    }
    v.host = target;
    settle();
    return {};
  }

  double last_change_s() const override {
    return scenario_.events.empty() ? 0 : scenario_.events.back().at_s;
  }

 private:
  struct HostS {
    bool up = true;
    std::int64_t used_mem = 0, used_cpu = 0, lent = 0;
  };
  struct VmS {
    HostId host = 0;
    std::int64_t demand_mem = 0, demand_cpu = 0, local_mem = 0, local_cpu = 0;
    std::map<HostId, std::int64_t> remote;
    std::int64_t remote_total() const {
      std::int64_t s = 0;
      for (const auto& [d, m] : remote) s += m;
      return s;
    }
  };

  std::int64_t free_mem(HostId h) const {
    return std::max<std::int64_t>(0, scenario_.hosts[h].memory_mib - hosts_[h].used_mem - hosts_[h].lent);
  }
  std::int64_t free_cpu(HostId h) const {
    return std::max<std::int64_t>(0, scenario_.hosts[h].cpu_mhz - hosts_[h].used_cpu);
  }

  // Shrinks what VMs no longer need first, then lets each host serve its VMs
  // in scenario order from what is free.
  void settle() {
    for (auto& v : vms_) {
      std::int64_t want_mem = std::max<std::int64_t>(0, v.demand_mem - v.remote_total());
      if (v.local_mem > want_mem) {
        hosts_[v.host].used_mem -= v.local_mem - want_mem;
        v.local_mem = want_mem;
      }
      if (v.local_cpu > v.demand_cpu) {
        hosts_[v.host].used_cpu -= v.local_cpu - v.demand_cpu;
        v.local_cpu = v.demand_cpu;
      }
    }
    for (auto& v : vms_) {
      if (!hosts_[v.host].up) continue;
      std::int64_t want_mem = std::max<std::int64_t>(0, v.demand_mem - v.remote_total());
      std::int64_t grow_mem = std::min(want_mem - v.local_mem, free_mem(v.host));
      std::int64_t grow_cpu = std::min(v.demand_cpu - v.local_cpu, free_cpu(v.host));
      if (grow_mem > 0) {
        v.local_mem += grow_mem;
        hosts_[v.host].used_mem += grow_mem;
      }
      if (grow_cpu > 0) {
        v.local_cpu += grow_cpu;
        hosts_[v.host].used_cpu += grow_cpu;
      }
    }
  }

  Scenario scenario_;
  std::vector<HostS> hosts_;
  std::vector<VmS> vms_;
  std::size_t next_ = 0;
};

}  // namespace

std::unique_ptr<Platform> make_sim(const Scenario& s) { return std::make_unique<Sim>(s); }

}  // namespace memlend::platform
