#include "rdma/common.hpp"

#include "policy/operator_input.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace memlend::rdma {

Error sys_error(const std::string& what, int err) { return Error{what + ": " + std::strerror(err)}; }

std::optional<TransportKind> parse_transport_kind(std::string_view text) {
  if (text == "auto") return TransportKind::automatic;
  if (text == "verbs") return TransportKind::verbs;
  if (text == "tcp") return TransportKind::tcp;
  return std::nullopt;
}

const char* transport_name(TransportKind kind) {
  switch (kind) {
    case TransportKind::automatic: return "auto";
    case TransportKind::verbs: return "verbs";
    case TransportKind::tcp: return "tcp";
  }
  return "?";
}

Expected<Endpoint> parse_endpoint(const std::string& text) {
  auto bad = [&](const std::string& why) { return Error{"address '" + text + "': " + why + " (want host:port)"}; };
  std::string host;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return bad("unterminated [v6] address");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) return bad("IPv6 addresses go in brackets");
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return bad("port is not a number");
  unsigned long p = std::stoul(port);
  if (p > 65535) return bad("port out of range");
  return Endpoint{host, static_cast<std::uint16_t>(p)};
}

std::string to_string(const Endpoint& e) {
  if (e.host.find(':') != std::string::npos) return "[" + e.host + "]:" + std::to_string(e.port);
  return e.host + ":" + std::to_string(e.port);
}

Expected<Secret> load_secret_file(const std::string& path) {
  auto read = read_input_file(path, "secret file", max_secret_bytes);
  if (!read) return read.error();
  std::string bytes = std::move(*read);
  // A trailing newline from `echo` is not part of the secret.
  while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == '\r')) bytes.pop_back();
  if (bytes.empty()) return Error{path + ": the secret file is empty"};
  return secret_from_text(bytes);
}

Secret secret_from_text(std::string_view text) {
  Secret s{};
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), s.data(), &len, EVP_sha256(), nullptr);
  return s;
}

Secret lease_secret(const Secret& pool_secret, std::uint64_t lease_id, std::uint64_t epoch) {
  std::uint8_t msg[6 + 16] = {'l', 'e', 'a', 's', 'e', ':'};
  for (int i = 0; i < 8; ++i) {
    msg[6 + i] = static_cast<std::uint8_t>(lease_id >> (8 * i));
    msg[14 + i] = static_cast<std::uint8_t>(epoch >> (8 * i));
  }
  Secret out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), pool_secret.data(), static_cast<int>(pool_secret.size()), msg, sizeof msg, out.data(), &len);
  return out;
}

Secret random_secret() {
  Secret s{};
  if (RAND_bytes(s.data(), static_cast<int>(s.size())) != 1) {
    // OpenSSL's generator failing means the system has no entropy source at
    // all; a guessable key would be worse than stopping.
    std::abort();
  }
  return s;
}

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

}  // namespace memlend::rdma
