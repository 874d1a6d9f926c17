#include "cli/cluster_flags.hpp"

#include "policy/operator_input.hpp"

#include <sys/stat.h>
#include <unistd.h>

namespace memlend::cli {

void add_cluster_flags(CLI::App* cmd, ClusterFlags& f) {
  cmd->add_option("--cluster", f.cluster, "Name of the cluster; agents of another cluster are refused");
  cmd->add_option("--cluster-secret-file", f.secret_file,
                  "File holding the cluster's shared secret (at least 16 bytes, mode 0600)")
      ->type_name("FILE");
  cmd->add_option("--tls-cert", f.cert,
                  "This node's certificate (PEM), signed by the cluster's CA; an agent's must name its\n"
                  "--host exactly, as its CN or a DNS subject alternative name")
      ->type_name("FILE");
  cmd->add_option("--tls-key", f.key, "This node's private key (PEM)")->type_name("FILE");
  cmd->add_option("--tls-ca", f.ca, "The cluster's CA certificate (PEM); peers must present one it signed")
      ->type_name("FILE");
}

Expected<std::string> read_secret(const std::string& path, const std::string& flag) {
  struct stat st {};
  auto text = read_input_file(path, flag == "--cluster-secret-file" ? "cluster secret" : "secret file",
                              max_secret_bytes, &st);
  if (!text) return Error{flag + ": " + text.error().message};
  if (st.st_mode & 077) return Error{flag + ": " + path + ": is readable by others; chmod 600 it"};
  std::string secret = std::move(*text);
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.size() < 16) return Error{flag + ": " + path + ": the secret is shorter than 16 bytes"};
  return secret;
}

std::optional<std::string> check_tls(const ClusterFlags& f) {
  if (f.cluster.empty()) return "--cluster: a cluster name is required";
  for (auto [flag, path] : {std::pair<const char*, const std::string*>{"--tls-cert", &f.cert},
                            {"--tls-key", &f.key},
                            {"--tls-ca", &f.ca}}) {
    if (path->empty()) return std::string(flag) + ": required: nodes talk over TLS only";
    if (::access(path->c_str(), R_OK) != 0) return std::string(flag) + ": " + *path + ": cannot read it";
  }
  return std::nullopt;
}

std::optional<std::pair<std::string, std::uint16_t>> parse_address(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  std::string host = text.substr(0, colon);
  std::string port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  unsigned long p = std::stoul(port);
  if (p > 65535) return std::nullopt;
  return std::make_pair(host, static_cast<std::uint16_t>(p));
}

}  // namespace memlend::cli
