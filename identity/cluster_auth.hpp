// Who an agent is. TLS (caf-openssl) says a peer has some certificate from our
// CA, but CAF 0.17 never hands that certificate to an actor, and does no
// host-name check of its own: any node's certificate would do for any host.
// So an agent proves, inside the join, which host it is:
//
//  - the cluster's secret (HMAC below): it belongs to this cluster;
//  - its certificate, which the controller checks against the cluster's CA
//    and whose CN or a DNS SAN must be the host it joins as;
//  - a signature with that certificate's private key over the controller's
//    fresh nonce, the cluster, the host and its incarnation: it holds the key
//    now, and the proof cannot be replayed into another join.
//
// A node holding the cluster secret and its own certificate can therefore
// join only as itself.
#pragma once

#include "core/expected.hpp"
#include "rdma/common.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace memlend {

// HMAC-SHA256(secret, cluster + "\n" + host + "\n" + incarnation), as hex.
std::string cluster_proof(const std::string& secret, const std::string& cluster, const std::string& host,
                          std::uint64_t incarnation);

// Constant-time comparison, so a refusal does not tell how close a guess was.
bool same_proof(const std::string& a, const std::string& b);

// What the agent signs: every field that says who joins, and the nonce.
std::string join_statement(const std::string& nonce, const std::string& cluster, const std::string& host,
                           std::uint64_t incarnation);

// A node's certificate and private key (the --tls-cert and --tls-key files).
class NodeIdentity {
 public:
  // Both files parsed, and the key is the certificate's.
  static Expected<NodeIdentity> load(const std::string& cert_file, const std::string& key_file);
  const std::string& certificate_pem() const { return certificate_pem_; }
  // Signature (hex) over `statement` with the node's key.
  Expected<std::string> sign(const std::string& statement) const;
  // This host's donor pool secret: a key derived from its private key, so only
  // the holder of this host's certificate (and the controller it tells over
  // TLS) has it; no other node can derive it from anything it holds. Stable
  // across restarts of the agent, so an operator's tool holding the key file
  // can reach the pool.
  rdma::Secret pool_secret() const;

 private:
  std::string certificate_pem_;
  std::shared_ptr<void> key_;  // EVP_PKEY
};

// The cluster's CA as the controller checks certificates against it.
class ClusterCa {
 public:
  static Expected<std::shared_ptr<const ClusterCa>> load(const std::string& ca_file);
  // Empty when `certificate_pem` is signed by the CA, names `host` (CN or DNS
  // SAN, exactly) and its key made `signature_hex` over `statement`; else why
  // not, as a short phrase.
  std::string check(const std::string& certificate_pem, const std::string& host, const std::string& statement,
                    const std::string& signature_hex) const;

 private:
  std::string refusal(const std::string& certificate_pem, const std::string& host, const std::string& statement,
                      const std::string& signature_hex) const;
  std::shared_ptr<void> store_;  // X509_STORE
};

// A fresh random nonce, as hex.
std::string fresh_nonce();

// A pool secret as it travels in a hello: 64 hex digits.
std::string hex_of_secret(const rdma::Secret& secret);
std::optional<rdma::Secret> secret_of_hex(const std::string& hex);

}  // namespace memlend
