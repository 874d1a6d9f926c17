// An agent's reading of its real node, in the controller's terms: the facts
// its host joins with, the host's use, and each VM's demand as the demand
// estimator (demand.hpp) infers it, the VM known by its hypervisor's name (the
// controller numbers it). The scenario platform states demand; a real node's
// is inferred, so this is where the two kinds of platform meet.
#pragma once

#include "firmware_hooks/demand.hpp"
#include "firmware_hooks/node.hpp"
#include "firmware_hooks/platform.hpp"

#include <memory>
#include <set>
#include <string>
#include <vector>

namespace memlend::platform {

struct NodeSample {
  // The host's name, memory for VMs (its VMs' and what is available), CPU
  // and reserve, as the controller admits it when its agent joins.
  policy::Host facts;
  HostSample host;            // what its VMs use of it
  std::vector<VmSample> vms;  // each named; `vm` is 0 until the controller numbers it
  std::vector<std::string> reasons;  // the demand estimate's sentence, one per VM
  NodeReading reading;        // what it rests on
};

class NodeSampler {
 public:
  // `reserved_mib`: memory of the host never lent (its hypervisor's growth,
  // HA restart room); the host joins with it as its reserve.
  explicit NodeSampler(std::shared_ptr<NodePlatform> platform, DemandSettings demand = {},
                       std::int64_t reserved_mib = 0);

  // One reading. ErrorCode::unavailable when the platform cannot be read;
  // a VM that vanished since the last reading is forgotten by the estimator.
  Expected<NodeSample> sample();

  NodePlatform& platform() { return *platform_; }

 private:
  std::shared_ptr<NodePlatform> platform_;
  DemandEstimator demand_;
  std::int64_t reserved_mib_;
  std::set<std::string> seen_;
};

}  // namespace memlend::platform
