#include "identity/cluster_auth.hpp"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

namespace memlend {

namespace {

// A certificate is a few KiB; anything far larger is not one, and a peer must
// not make the controller parse megabytes.
constexpr std::size_t max_certificate_bytes = 64 * 1024;
constexpr std::size_t max_signature_hex = 2 * 1024;

std::string hex_of(const unsigned char* data, std::size_t size) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 15];
  }
  return out;
}

bool bytes_of(const std::string& hex, std::vector<unsigned char>& out) {
  if (hex.size() % 2 != 0) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  out.clear();
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out.push_back(static_cast<unsigned char>(hi << 4 | lo));
  }
  return true;
}

template <class T, void (*Free)(T*)>
std::unique_ptr<T, void (*)(T*)> owned(T* p) {
  return {p, [](T* q) { Free(q); }};
}

std::unique_ptr<X509, void (*)(X509*)> parse_certificate(const std::string& pem) {
  auto bio = owned<BIO, BIO_free_all>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509* cert = bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  return owned<X509, X509_free>(cert);
}

Expected<std::string> read_small_file(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{std::string(flag) + ": " + one_line(path) + ": cannot read it"};
  std::string text(max_certificate_bytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > max_certificate_bytes)
    return Error{std::string(flag) + ": " + one_line(path) + ": larger than 64 KiB, not a PEM file"};
  return text;
}

// Exactly `host`, byte for byte: X509_check_host would match case-blind and
// allow wildcards, and two hosts of a scenario may differ only in case.
bool names(X509* cert, const std::string& host) {
  auto equal = [&](const ASN1_STRING* s) {
    return s && static_cast<std::size_t>(ASN1_STRING_length(s)) == host.size() &&
           std::equal(host.begin(), host.end(), reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)));
  };
  auto* sans = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  bool found = false;
  for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !found; ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
    if (n->type == GEN_DNS) found = equal(n->d.dNSName);
  }
  if (sans) GENERAL_NAMES_free(sans);
  X509_NAME* subject = X509_get_subject_name(cert);
  for (int i = -1; !found && (i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0;)
    found = equal(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
  return found;
}

// The certificate's CN, for the refusal a person reads.
std::string common_name(X509* cert) {
  X509_NAME* subject = X509_get_subject_name(cert);
  int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (i < 0) return "(no CN)";
  const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
  return one_line(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                              static_cast<std::size_t>(ASN1_STRING_length(s))));
}

}  // namespace

std::string cluster_proof(const std::string& secret, const std::string& cluster, const std::string& host,
                          std::uint64_t incarnation) {
  std::string msg = cluster + "\n" + host + "\n" + std::to_string(incarnation);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), mac, &len);
  return hex_of(mac, len);
}

bool same_proof(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string join_statement(const std::string& nonce, const std::string& cluster, const std::string& host,
                           std::uint64_t incarnation) {
  return "memlend join v1\n" + nonce + "\n" + cluster + "\n" + host + "\n" + std::to_string(incarnation);
}

std::string fresh_nonce() { return hex_of_secret(rdma::random_secret()); }

std::string hex_of_secret(const rdma::Secret& secret) { return hex_of(secret.data(), secret.size()); }

std::optional<rdma::Secret> secret_of_hex(const std::string& hex) {
  std::vector<unsigned char> bytes;
  rdma::Secret out{};
  if (hex.size() != out.size() * 2 || !bytes_of(hex, bytes)) return std::nullopt;
  std::copy(bytes.begin(), bytes.end(), out.begin());
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return out;
}

Expected<NodeIdentity> NodeIdentity::load(const std::string& cert_file, const std::string& key_file) {
  auto cert_pem = read_small_file(cert_file, "--tls-cert");
  if (!cert_pem) return cert_pem.error();
  auto key_pem = read_small_file(key_file, "--tls-key");
  if (!key_pem) return key_pem.error();
  auto cert = parse_certificate(*cert_pem);
  if (!cert) {
    ERR_clear_error();
    return Error{"--tls-cert: " + one_line(cert_file) + ": not a PEM certificate"};
  }
  auto bio = owned<BIO, BIO_free_all>(BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size())));
  EVP_PKEY* key = bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  OPENSSL_cleanse(key_pem->data(), key_pem->size());
  if (!key) {
    ERR_clear_error();
    return Error{"--tls-key: " + one_line(key_file) + ": not an unencrypted PEM private key"};
  }
  NodeIdentity id;
  id.key_ = std::shared_ptr<void>(key, [](void* k) { EVP_PKEY_free(static_cast<EVP_PKEY*>(k)); });
  if (X509_check_private_key(cert.get(), key) != 1)
    return Error{"--tls-key: " + one_line(key_file) + ": is not the key of " + one_line(cert_file)};
  id.certificate_pem_ = std::move(*cert_pem);
  return id;
}

Expected<std::string> NodeIdentity::sign(const std::string& statement) const {
  auto* key = static_cast<EVP_PKEY*>(key_.get());
  auto ctx = owned<EVP_MD_CTX, EVP_MD_CTX_free>(EVP_MD_CTX_new());
  std::size_t len = 0;
  auto data = reinterpret_cast<const unsigned char*>(statement.data());
  // Ed25519 keys take no digest; RSA and EC keys sign its SHA-256.
  const EVP_MD* md = EVP_PKEY_id(key) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, data, statement.size()) != 1)
    return Error{"cannot sign with this node's key"};
  std::vector<unsigned char> sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, data, statement.size()) != 1)
    return Error{"cannot sign with this node's key"};
  return hex_of(sig.data(), len);
}

rdma::Secret NodeIdentity::pool_secret() const {
  auto* key = static_cast<EVP_PKEY*>(key_.get());
  unsigned char* der = nullptr;
  int len = i2d_PrivateKey(key, &der);
  rdma::Secret out{};
  if (len <= 0) {
    // A key OpenSSL cannot encode is one it could not have loaded; better a
    // random pool secret (the controller still learns it) than a fixed one.
    return rdma::random_secret();
  }
  static const char label[] = "memlend donor pool secret v1";
  unsigned int n = 0;
  HMAC(EVP_sha256(), der, len, reinterpret_cast<const unsigned char*>(label), sizeof label - 1, out.data(), &n);
  OPENSSL_clear_free(der, static_cast<std::size_t>(len));
  return out;
}

Expected<std::shared_ptr<const ClusterCa>> ClusterCa::load(const std::string& ca_file) {
  auto* store = X509_STORE_new();
  if (!store) return Error{"--tls-ca: out of memory"};
  auto ca = std::make_shared<ClusterCa>();
  ca->store_ = std::shared_ptr<void>(store, [](void* s) { X509_STORE_free(static_cast<X509_STORE*>(s)); });
  if (X509_STORE_load_file(store, ca_file.c_str()) != 1) {
    ERR_clear_error();
    return Error{"--tls-ca: " + one_line(ca_file) + ": no PEM certificate in it"};
  }
  return std::shared_ptr<const ClusterCa>(std::move(ca));
}

std::string ClusterCa::check(const std::string& certificate_pem, const std::string& host,
                             const std::string& statement, const std::string& signature_hex) const {
  // A refusal leaves OpenSSL's per-thread error queue as it found it: the
  // next SSL call on this thread must not read our failure as its own.
  std::string why = refusal(certificate_pem, host, statement, signature_hex);
  ERR_clear_error();
  return why;
}

std::string ClusterCa::refusal(const std::string& certificate_pem, const std::string& host,
                               const std::string& statement, const std::string& signature_hex) const {
  if (certificate_pem.size() > max_certificate_bytes) return "its certificate is larger than 64 KiB";
  auto cert = parse_certificate(certificate_pem);
  if (!cert) return "it sent no certificate";
  auto ctx = owned<X509_STORE_CTX, X509_STORE_CTX_free>(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), static_cast<X509_STORE*>(store_.get()), cert.get(), nullptr) != 1)
    return "its certificate cannot be checked (out of memory)";
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_ANY);
  if (X509_verify_cert(ctx.get()) != 1)
    return std::string("its certificate is not from the cluster's CA (") +
           X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())) + ")";
  if (!names(cert.get(), host)) return "its certificate is for " + common_name(cert.get()) + ", not " + host;
  std::vector<unsigned char> sig;
  if (signature_hex.size() > max_signature_hex || !bytes_of(signature_hex, sig) || sig.empty())
    return "it sent no signature";
  EVP_PKEY* key = X509_get0_pubkey(cert.get());
  auto md_ctx = owned<EVP_MD_CTX, EVP_MD_CTX_free>(EVP_MD_CTX_new());
  const EVP_MD* md = key && EVP_PKEY_id(key) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
  if (!key || !md_ctx || EVP_DigestVerifyInit(md_ctx.get(), nullptr, md, nullptr, key) != 1 ||
      EVP_DigestVerify(md_ctx.get(), sig.data(), sig.size(), reinterpret_cast<const unsigned char*>(statement.data()),
                       statement.size()) != 1)
    return "its signature does not prove it holds its certificate's key";
  return {};
}

}  // namespace memlend
