// The platform: what memlend reads from the hypervisor (telemetry) and asks
// of it (actions). The actors see only this interface; `sim` implements it
// over a scenario, and other backends (vendor hooks, a real hypervisor) can
// follow without touching the actors.
#pragma once

#include "core/expected.hpp"
#include "policy/model.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace memlend::platform {

using policy::HostId;
using policy::VmId;

struct HostSample {
  HostId host = 0;
  bool up = true;
  std::int64_t used_mem = 0;  // local memory of the VMs it runs
  std::int64_t used_cpu = 0;
  // The VMs sent with it are every VM running on the host (a real node's
  // agent): one it no longer lists has stopped, been destroyed or moved.
  bool lists_every_vm = false;
};

struct VmSample {
  VmId vm = 0;
  HostId host = 0;
  bool host_up = true;
  std::int64_t demand_mem = 0;  // what the VM wants now
  std::int64_t demand_cpu = 0;
  std::int64_t local_mem = 0;   // what its host gives it
  std::int64_t local_cpu = 0;
  std::int64_t remote_mem = 0;  // remote memory attached to it
  std::int64_t host_free_mem = 0;  // what its host could still give it
  // From an agent without a scenario: the hypervisor's name, and `vm` means
  // nothing; its host actor gives it the controller's id.
  std::string name;
  // From a real node: the demand estimator's sentence behind demand_mem and
  // demand_cpu ("guest has 70 MiB available ..."), for the decision's reason.
  std::string reason;
};

// The most of a node's reason a controller keeps: a sentence, not a file.
inline constexpr std::size_t vm_reason_max = 400;

struct Telemetry {
  double t_s = 0;
  std::vector<HostSample> hosts;
  std::vector<VmSample> vms;
};

class Platform {
 public:
  virtual ~Platform() = default;
  virtual std::string_view backend() const = 0;
  // Brings the platform to time t_s (scenario time) and samples it.
  virtual Telemetry sample(double t_s) = 0;
  // The same, but only one host and its VMs are reported (an agent's view).
  virtual Telemetry sample_host(double t_s, HostId host) = 0;
  // Where a VM runs and the remote memory attached to it, by donor.
  virtual HostId host_of(VmId vm) const = 0;
  virtual std::vector<policy::RemotePart> remote_of(VmId vm) const = 0;
  // The VM's memory now includes `mib` lent by `donor`.
  virtual Expected<void> attach_remote(VmId vm, HostId donor, std::int64_t mib) = 0;
  // The VM gives back `mib` of what `donor` lent it (the donor reclaims it).
  virtual Expected<void> detach_remote(VmId vm, HostId donor, std::int64_t mib) = 0;
  // Live-migrates the VM to `target`.
  virtual Expected<void> migrate(VmId vm, HostId target) = 0;
  // The time of the last scripted change, so a run knows when the script ends.
  virtual double last_change_s() const = 0;
};

// The simulated cluster: a hypervisor per host that serves its VMs in
// scenario order, keeps a VM's local memory while it can (it never takes
// memory from a running VM because another grew), grows it when memory is
// free, and applies the scenario's events at their time.
std::unique_ptr<Platform> make_sim(const policy::Scenario& s);

}  // namespace memlend::platform
