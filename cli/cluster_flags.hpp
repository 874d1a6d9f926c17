// Flags shared by the controller's cluster mode and the agent: the cluster's
// name, its secret, and the TLS files.
#pragma once

#include "actors/controller.hpp"
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
// the file. The secret must be at least 16 bytes and readable by its owner only.
Expected<std::string> read_secret(const std::string& path);
std::optional<std::string> check_tls(const ClusterFlags& f);

// "HOST:PORT" (PORT may be 0 to listen on any free port).
std::optional<std::pair<std::string, std::uint16_t>> parse_address(const std::string& text);

}  // namespace memlend::cli
