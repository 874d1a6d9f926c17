// Serves a Registry at http://ADDR/metrics (prometheus-cpp's pull library,
// an embedded civetweb server on threads of its own, so no actor ever
// blocks on a scrape), and beside it, on the same listener, the probes of a
// service manager or a load balancer: /healthz (200 "ok" whenever this
// process answers HTTP) and, given a readiness check, /readyz (200 "ready",
// or 503 and the check's one-line reason).
#pragma once

#include "core/expected.hpp"
#include "metrics/metrics.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace prometheus {
class Exposer;
}

namespace memlend::metrics {

// Loopback by default: metrics tell an attacker where memory is, so exposing
// them beyond the node is the operator's choice.
inline constexpr std::string_view default_address = "127.0.0.1:9464";

struct ListenAddress {
  std::string host;        // an IPv4 address
  std::uint16_t port = 0;  // 0: any free port (tests)
  std::string text() const;  // "127.0.0.1:9464"
};

// "127.0.0.1:9464", "0.0.0.0:9464", "localhost:9464". Host names other than
// localhost are refused, so that the daemon does not depend on name
// resolution to start; IPv6 is refused because Debian's civetweb, which
// serves the page, is built without it.
Expected<ListenAddress> parse_listen_address(std::string_view text);

// civetweb serves one connection per worker thread, and a connection that
// sends nothing holds its worker until the request timeout: with too few
// workers and no timeout, a couple of idle connections starve every scrape.
// With these, a scrape waits behind connections that send nothing only while
// more than `threads` of them are open, and at most `request_timeout` (then
// civetweb drops them); Prometheus's default scrape timeout is 10 s.
// Keep-alive stays off, so a scraper holds no worker between scrapes.
struct ExposerLimits {
  int threads = 16;
  std::chrono::milliseconds request_timeout{3000};
};

// Why the process is not ready, in one line; nothing when it is. Called on
// the server's threads, once per /readyz request.
using ReadinessCheck = std::function<std::optional<std::string>()>;

class HttpExposer {
 public:
  // Listens at once; an address in use or not on this node is an error value
  // that says so (errno's words), never an exception. Without `ready`,
  // /readyz is not served (404).
  static Expected<std::unique_ptr<HttpExposer>> start(const Registry& registry, std::string_view address,
                                                      const ExposerLimits& limits = {}, ReadinessCheck ready = {});
  ~HttpExposer();
  HttpExposer(const HttpExposer&) = delete;
  HttpExposer& operator=(const HttpExposer&) = delete;

  // Where it listens, with the real port when 0 was asked for.
  const ListenAddress& address() const { return address_; }

 private:
  HttpExposer() = default;
  std::unique_ptr<prometheus::Exposer> exposer_;
  ListenAddress address_;
  int ready_port_ = -1;  // its readiness check's key, when it has one
};

}  // namespace memlend::metrics
