// How the data path reaches a granted lease, in the words every room shares:
// the lease facts carry it (core/facts.hpp, with its inspect), the data plane
// grants and maps with it, the journal stores it without its secret, and
// rdma/ builds its transports' view of a lease from it. Plain C++, so that
// rdma/ takes it without CAF.
#pragma once

#include "core/hex.hpp"

#include <cstddef>
#include <cstdint>
#include <string>

namespace memlend {

// A lease's and a pool's secret, in bytes.
inline constexpr std::size_t secret_bytes = 32;

// How the data path reaches a granted lease: where its donor listens, the
// lease's id and epoch there, and its secret (hex). The secret is the control
// plane's to hand to the lease's two parties: never stored or shown, and
// empty after a restart until the donor's pool secret is known again.
struct LeaseAccess {
  std::string addr;  // "host:port"
  std::uint64_t id = 0;
  std::uint64_t epoch = 0;
  std::string secret;
};

inline bool valid_secret(const std::string& hex) {
  return hex.empty() || from_hex<secret_bytes>(hex).has_value();
}

}  // namespace memlend
