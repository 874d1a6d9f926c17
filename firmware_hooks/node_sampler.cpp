#include "firmware_hooks/node_sampler.hpp"

#include <algorithm>

namespace memlend::platform {

NodeSampler::NodeSampler(std::shared_ptr<NodePlatform> platform, DemandSettings demand, std::int64_t reserved_mib)
    : platform_(std::move(platform)), demand_(demand), reserved_mib_(reserved_mib) {}

Expected<NodeSample> NodeSampler::sample() {
  auto read = platform_->read();
  if (!read) return read.error();
  NodeSample out;
  out.reading = std::move(*read);
  const HostReading& h = out.reading.host;
  out.facts.name = h.name;
  out.facts.cpu_mhz = h.cpu_mhz;
  // The model's host memory is what it has for VMs: what its VMs hold now and
  // what the kernel says could still be allocated without swapping. The rest
  // (the hypervisor, the node's own services, memory this host already
  // lends, which sits in its agent) is never lent again.
  std::int64_t vms_mib = 0;
  for (const auto& vm : out.reading.vms)
    if (vm.running) vms_mib += vm.memory_mib;
  out.facts.memory_mib = vms_mib + std::max<std::int64_t>(0, h.available_mib);
  out.facts.reserved_mib = std::min(reserved_mib_, out.facts.memory_mib);
  std::int64_t free_mib = std::max<std::int64_t>(0, h.available_mib - out.facts.reserved_mib);
  out.host.up = true;
  out.host.lists_every_vm = true;
  std::set<std::string> now;
  for (const auto& vm : out.reading.vms) {
    now.insert(vm.name);
    if (!vm.running) continue;
    VmDemand d = demand_.update(vm, h, out.reading.at);
    VmSample s;
    s.name = vm.name;
    s.demand_mem = d.memory_mib;
    s.local_mem = vm.memory_mib;
    s.remote_mem = vm.plugged_mib;
    // Before a second reading there is no rate: it has what it uses.
    s.demand_cpu = d.cpu_mhz;
    s.local_cpu = d.cpu_used_mhz > 0 ? std::min(d.cpu_used_mhz, d.cpu_mhz) : d.cpu_mhz;
    s.host_free_mem = free_mib;
    s.reason = d.reason;
    out.host.used_mem += s.local_mem;
    out.host.used_cpu += s.local_cpu;
    out.vms.push_back(std::move(s));
    out.reasons.push_back(d.reason);
  }
  for (const auto& gone : seen_)
    if (!now.count(gone)) demand_.forget(gone);
  seen_ = std::move(now);
  return out;
}

}  // namespace memlend::platform
