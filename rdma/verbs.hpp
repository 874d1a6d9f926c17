// Internal to rdma/: the verbs side of a donor, started by DonorServer when
// the transport is verbs.
#pragma once

#include "rdma/donor.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace memlend::rdma {

// The first RDMA device's name, or nullopt when there is none (or no
// rdma-core userspace driver for it).
std::optional<std::string> first_rdma_device();

// Told when a verbs connection starts and stops working for a lease, so the
// server's orphan accounting covers both transports.
struct VerbsHooks {
  std::function<void(std::uint64_t lease)> attached;
  std::function<void(std::uint64_t lease)> detached;
};

class VerbsListener {
 public:
  virtual ~VerbsListener() = default;
  virtual std::uint16_t port() const = 0;
  virtual void cut(std::uint64_t lease_id) = 0;  // revoked: disconnect its queue pairs
  virtual void stop() = 0;
};

Expected<std::unique_ptr<VerbsListener>> start_verbs_listener(std::shared_ptr<DonorPool> pool,
                                                              const std::string& address, const Timeouts& timeouts,
                                                              VerbsHooks hooks);

}  // namespace memlend::rdma
