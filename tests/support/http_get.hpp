// A tiny HTTP/1.0 client over a plain socket: enough to scrape /metrics and
// to query Prometheus's HTTP API on loopback, with no client library that
// could hide what goes over the wire.
#pragma once

#include <cstdint>
#include <string>

namespace memlend::test {

struct HttpResponse {
  int status = 0;  // 0: no connection or no HTTP answer
  std::string headers;
  std::string body;
  std::string error;  // why status is 0
};

// GET http://host:port/target (target already percent-encoded), waiting at
// most timeout_s for the whole answer.
HttpResponse http_get(const std::string& host, std::uint16_t port, const std::string& target,
                      double timeout_s = 10);

// Percent-encodes a query-string value.
std::string url_encode(const std::string& s);

// A TCP port on 127.0.0.1 that was free a moment ago, for servers that must
// be told their port (Prometheus, `memlend run --metrics`).
std::uint16_t free_loopback_port();

}  // namespace memlend::test
