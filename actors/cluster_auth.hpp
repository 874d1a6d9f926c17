// Proof that an agent holds the cluster's secret: TLS says a peer has a
// certificate from our CA, this says it belongs to this cluster and speaks
// for the host it names (caf-openssl does no host-name check of its own).
#pragma once

#include <cstdint>
#include <string>

namespace memlend {

// HMAC-SHA256(secret, cluster + "\n" + host + "\n" + incarnation), as hex.
std::string cluster_proof(const std::string& secret, const std::string& cluster, const std::string& host,
                          std::uint64_t incarnation);

// Constant-time comparison, so a refusal does not tell how close a guess was.
bool same_proof(const std::string& a, const std::string& b);

}  // namespace memlend
