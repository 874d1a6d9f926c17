// Flags shared by the controller's cluster mode and the agent: the cluster's
// name, its secret, and the TLS files.
#pragma once

#include "node/controller.hpp"
#include "cli/cli.hpp"

#include <optional>
#include <string>

namespace memlend::cli {

struct ClusterFlags {
  std::string cluster;
  std::string secret_file;
  std::string cert;
  std::string key;
  std::string ca;
};

void add_cluster_flags(CLI::App* cmd, ClusterFlags& f);

// Reads and checks the secret and the TLS files: an error names the flag and
// the file. The secret must be a regular file, readable by its owner only,
// of 16 bytes to 64 KiB (a trailing newline is not part of it). The cluster's
// secret and a donor's pool secret (`memlend donor --secret-file`) alike.
inline constexpr std::int64_t max_secret_bytes = 64 << 10;
Expected<std::string> read_secret(const std::string& path, const std::string& flag = "--cluster-secret-file");
std::optional<std::string> check_tls(const ClusterFlags& f);

// "HOST:PORT" (PORT may be 0 to listen on any free port).
std::optional<std::pair<std::string, std::uint16_t>> parse_address(const std::string& text);

}  // namespace memlend::cli
