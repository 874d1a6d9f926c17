#include "firmware_hooks/demand.hpp"
#include "firmware_hooks/node.hpp"
#include "firmware_hooks/platform.hpp"

#include <algorithm>
#include <map>

namespace memlend::platform {

namespace {

class SimNode final : public NodePlatform {
 public:
  SimNode(const policy::Scenario& s, policy::HostId host, double at_s)
      : scenario_(s), sim_(make_sim(s)), host_(host), at_s_(at_s), start_(std::chrono::steady_clock::now()) {}

  std::string_view backend() const override { return "sim"; }

  Expected<NodeReading> read() override {
    Telemetry t = sim_->sample_host(at_s_, host_);
    NodeReading r;
    r.at = std::chrono::steady_clock::now();
    const policy::Host& h = scenario_.hosts[host_];
    r.host.name = h.name;
    r.host.memory_mib = h.memory_mib;
    r.host.cpus = std::max<int>(1, static_cast<int>(h.cpu_mhz / 2000));
    r.host.cpu_mhz = h.cpu_mhz;
    std::int64_t used = t.hosts.empty() ? 0 : t.hosts[0].used_mem;
    r.host.available_mib = std::max<std::int64_t>(0, h.memory_mib - used);
    double elapsed = std::chrono::duration<double>(r.at - start_).count();
    double mhz_per_cpu = static_cast<double>(h.cpu_mhz) / r.host.cpus;
    for (const VmSample& v : t.vms) {
      if (!t.hosts.empty() && !t.hosts[0].up) break;
      VmReading vm;
      vm.name = scenario_.vms[v.vm].name;
      vm.memory_mib = v.local_mem;
      vm.plugged_mib = v.remote_mem;
      vm.pluggable_mib = std::max(v.remote_mem, v.demand_mem);
      vm.vcpus = std::max<int>(1, static_cast<int>((v.demand_cpu + mhz_per_cpu - 1) / mhz_per_cpu));
      std::int64_t has = v.local_mem + v.remote_mem;
      vm.guest_available_mib = std::max<std::int64_t>(0, has - v.demand_mem + DemandSettings{}.margin_mib);
      std::uint64_t& faults = faults_[v.vm];
      if (v.demand_mem > has) faults += 1000;
      vm.major_faults = faults;
      vm.cpu_s = elapsed * static_cast<double>(std::min(v.demand_cpu, v.local_cpu)) / mhz_per_cpu;
      vm.cpu_throttled_s = v.demand_cpu > v.local_cpu ? elapsed : 0.0;
      r.vms.push_back(std::move(vm));
    }
    std::sort(r.vms.begin(), r.vms.end(), [](const VmReading& a, const VmReading& b) { return a.name < b.name; });
    return r;
  }

  Expected<void> attach(const std::string& vm, const LentMemory& lent) override {
    auto ids = find(vm, lent.donor);
    if (!ids) return ids.error();
    return sim_->attach_remote(ids->first, ids->second, lent.mib);
  }
  Expected<void> detach(const std::string& vm, const LentMemory& lent) override {
    auto ids = find(vm, lent.donor);
    if (!ids) return ids.error();
    return sim_->detach_remote(ids->first, ids->second, lent.mib);
  }
  Expected<void> migrate(const std::string& vm, const MigrationTarget& target) override {
    auto ids = find(vm, target.host);
    if (!ids) return ids.error();
    return sim_->migrate(ids->first, ids->second);
  }
  // The scenario's platform moves a VM by itself: no address is needed.
  Expected<std::string> receive(const std::string&) override { return std::string(); }
  Expected<void> set_balloon(const std::string& vm, std::int64_t) override {
    return Error{"balloon: the simulated VM " + vm + " has no balloon", ErrorCode::refused};
  }

 private:
  Expected<std::pair<policy::VmId, policy::HostId>> find(const std::string& vm, const std::string& host) const {
    auto v = scenario_.find_vm(vm);
    if (!v || sim_->host_of(*v) != host_) return Error{"no VM " + vm + " on this host", ErrorCode::refused};
    auto h = scenario_.find_host(host);
    if (!h) return Error{"no host " + host + " in the scenario", ErrorCode::refused};
    return std::make_pair(*v, *h);
  }

  policy::Scenario scenario_;
  std::unique_ptr<Platform> sim_;
  policy::HostId host_;
  double at_s_;
  std::chrono::steady_clock::time_point start_;
  std::map<policy::VmId, std::uint64_t> faults_;
};

}  // namespace

Expected<std::unique_ptr<NodePlatform>> make_sim_node(const policy::Scenario& s, const std::string& host,
                                                      double at_s) {
  auto h = s.find_host(host);
  if (!h) return Error{"--host: no host named " + host + " in the scenario", ErrorCode::invalid_input};
  return std::unique_ptr<NodePlatform>(std::make_unique<SimNode>(s, *h, at_s));
}

}  // namespace memlend::platform
