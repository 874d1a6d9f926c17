// What the data-path commands (donor, probe) share: limits, the secret.
#pragma once

#include "cli/cli.hpp"
#include "rdma/common.hpp"

#include <iostream>
#include <string>

namespace memlend::cli {

// 16 TiB: a typo guard, not a policy.
inline constexpr std::int64_t max_mib = std::int64_t{1} << 24;

// Without a file, a fixed key everyone knows: fine on a test bench, and the
// donor says so in its log.
inline Expected<rdma::Secret> load_secret(const std::string& file) {
  if (file.empty()) return rdma::Secret{};
  auto s = rdma::load_secret_file(file);
  if (!s) return Error{"--secret-file: " + s.error().message};
  return s;
}

// A failure of the environment or the peer rather than of the input: exit 1.
inline int failure(const std::string& message) {
  std::cerr << "memlend: " << message << '\n';
  return exit_failure;
}

}  // namespace memlend::cli
