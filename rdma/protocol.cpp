#include "rdma/protocol.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <cstdlib>
#include <cstring>

namespace memlend::rdma::wire {

namespace {

constexpr char hello_magic[4] = {'M', 'L', 'D', 'H'};
constexpr char request_magic[4] = {'M', 'L', 'D', 'Q'};
constexpr char response_magic[4] = {'M', 'L', 'D', 'R'};

template <class T>
void put(std::uint8_t*& p, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) *p++ = static_cast<std::uint8_t>(static_cast<std::uint64_t>(v) >> (8 * i));
}

template <class T>
T get(const std::uint8_t*& p) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= static_cast<std::uint64_t>(*p++) << (8 * i);
  return static_cast<T>(v);
}

bool known_op(std::uint8_t op) { return op >= 1 && op <= static_cast<std::uint8_t>(Op::usage); }

Error malformed(const char* what, const std::string& why) { return Error{std::string("malformed ") + what + ": " + why}; }

}  // namespace

void encode(const Hello& h, std::uint8_t* out) {
  std::memcpy(out, hello_magic, 4);
  std::uint8_t* p = out + 4;
  put<std::uint8_t>(p, h.version);
  put<std::uint8_t>(p, 0);
  put<std::uint16_t>(p, 0);
  std::memcpy(p, h.nonce.data(), nonce_size);
  p += nonce_size;
  put<std::uint16_t>(p, h.verbs_port);
  put<std::uint16_t>(p, 0);
  put<std::uint32_t>(p, 0);
}

void encode(const Request& r, std::uint8_t* out) {
  std::memcpy(out, request_magic, 4);
  std::uint8_t* p = out + 4;
  put<std::uint8_t>(p, r.version);
  put<std::uint8_t>(p, static_cast<std::uint8_t>(r.op));
  put<std::uint16_t>(p, r.flags);
  put<std::uint64_t>(p, r.lease);
  put<std::uint64_t>(p, r.offset);
  put<std::uint32_t>(p, r.length);
  put<std::uint32_t>(p, 0);
  put<std::uint64_t>(p, r.seq);
  std::memcpy(p, r.tag.data(), tag_size);
}

void encode(const Response& r, std::uint8_t* out) {
  std::memcpy(out, response_magic, 4);
  std::uint8_t* p = out + 4;
  put<std::uint8_t>(p, r.version);
  put<std::uint8_t>(p, static_cast<std::uint8_t>(r.code));
  put<std::uint8_t>(p, static_cast<std::uint8_t>(r.op));
  put<std::uint8_t>(p, 0);
  put<std::uint64_t>(p, r.seq);
  put<std::uint32_t>(p, r.length);
  put<std::uint32_t>(p, 0);
  put<std::uint64_t>(p, r.value);
  put<std::uint64_t>(p, r.value2);
}

Expected<Hello> decode_hello(const std::uint8_t* in, std::size_t size) {
  if (size != hello_size) return malformed("hello", "wrong size");
  if (std::memcmp(in, hello_magic, 4) != 0) return malformed("hello", "not a memlend donor");
  const std::uint8_t* p = in + 4;
  Hello h;
  h.version = get<std::uint8_t>(p);
  if (h.version != version)
    return Error{"donor speaks protocol version " + std::to_string(h.version) + ", this side " +
                 std::to_string(version)};
  if (get<std::uint8_t>(p) != 0 || get<std::uint16_t>(p) != 0) return malformed("hello", "reserved bits set");
  std::memcpy(h.nonce.data(), p, nonce_size);
  p += nonce_size;
  h.verbs_port = get<std::uint16_t>(p);
  if (get<std::uint16_t>(p) != 0 || get<std::uint32_t>(p) != 0) return malformed("hello", "reserved bits set");
  return h;
}

Expected<Request> decode_request(const std::uint8_t* in, std::size_t size) {
  if (size != request_size) return malformed("request", "wrong size");
  if (std::memcmp(in, request_magic, 4) != 0) return malformed("request", "bad magic");
  const std::uint8_t* p = in + 4;
  Request r;
  r.version = get<std::uint8_t>(p);
  if (r.version != version) return malformed("request", "version " + std::to_string(r.version));
  std::uint8_t op = get<std::uint8_t>(p);
  if (!known_op(op)) return malformed("request", "unknown op " + std::to_string(op));
  r.op = static_cast<Op>(op);
  r.flags = get<std::uint16_t>(p);
  if (r.flags != 0) return malformed("request", "flags set");
  r.lease = get<std::uint64_t>(p);
  r.offset = get<std::uint64_t>(p);
  r.length = get<std::uint32_t>(p);
  if (get<std::uint32_t>(p) != 0) return malformed("request", "reserved bits set");
  r.seq = get<std::uint64_t>(p);
  std::memcpy(r.tag.data(), p, tag_size);
  if (r.length > max_transfer) return malformed("request", "length over the limit");
  bool has_range = r.op == Op::read || r.op == Op::write || r.op == Op::discard;
  if (!has_range && r.length != 0) return malformed("request", "length on an op without a byte range");
  // A range that wraps around 2^64 lies in no lease; the donor checks the
  // lease's own bounds.
  if (r.op == Op::discard && !in_bounds(r.offset, r.length, ~std::uint64_t{0}))
    return malformed("request", "discard range wraps around");
  return r;
}

Expected<Response> decode_response(const std::uint8_t* in, std::size_t size) {
  if (size != response_size) return malformed("response", "wrong size");
  if (std::memcmp(in, response_magic, 4) != 0) return malformed("response", "bad magic");
  const std::uint8_t* p = in + 4;
  Response r;
  r.version = get<std::uint8_t>(p);
  if (r.version != version) return malformed("response", "version " + std::to_string(r.version));
  std::uint8_t code = get<std::uint8_t>(p);
  if (code > static_cast<std::uint8_t>(Code::no_space)) return malformed("response", "unknown code");
  r.code = static_cast<Code>(code);
  std::uint8_t op = get<std::uint8_t>(p);
  if (!known_op(op)) return malformed("response", "unknown op");
  r.op = static_cast<Op>(op);
  if (get<std::uint8_t>(p) != 0) return malformed("response", "reserved bits set");
  r.seq = get<std::uint64_t>(p);
  r.length = get<std::uint32_t>(p);
  if (get<std::uint32_t>(p) != 0) return malformed("response", "reserved bits set");
  r.value = get<std::uint64_t>(p);
  r.value2 = get<std::uint64_t>(p);
  if (r.length > max_transfer) return malformed("response", "length over the limit");
  return r;
}

Mac::Mac(const Secret& key) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  auto* ctx = mac ? EVP_MAC_CTX_new(mac) : nullptr;
  EVP_MAC_free(mac);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0), OSSL_PARAM_construct_end()};
  if (!ctx || EVP_MAC_init(ctx, key.data(), key.size(), params) != 1) {
    // Without HMAC-SHA256 the data path cannot authenticate anything; this is
    // a broken OpenSSL installation, not an input error.
    std::abort();
  }
  ctx_ = ctx;
}

Mac::~Mac() { EVP_MAC_CTX_free(static_cast<EVP_MAC_CTX*>(ctx_)); }

Tag Mac::tag(const std::uint8_t* request, const Nonce& nonce) const {
  // The keyed context is copied, not re-keyed: cheaper, and safe for
  // concurrent callers since the original is never updated.
  EVP_MAC_CTX* c = EVP_MAC_CTX_dup(static_cast<EVP_MAC_CTX*>(ctx_));
  if (!c) std::abort();
  std::uint8_t out[32];
  std::size_t len = 0;
  EVP_MAC_update(c, request, signed_size);
  EVP_MAC_update(c, nonce.data(), nonce.size());
  EVP_MAC_final(c, out, &len, sizeof out);
  EVP_MAC_CTX_free(c);
  Tag t{};
  std::memcpy(t.data(), out, tag_size);
  return t;
}

bool tag_equal(const Tag& a, const Tag& b) { return CRYPTO_memcmp(a.data(), b.data(), tag_size) == 0; }

bool in_bounds(std::uint64_t offset, std::uint64_t length, std::uint64_t size) {
  return offset <= size && length <= size - offset;
}

}  // namespace memlend::rdma::wire
