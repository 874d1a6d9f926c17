#include "metrics/http_exposer.hpp"

#include <prometheus/exposer.h>

#include <CivetServer.h>
#include <civetweb.h>

#include <arpa/inet.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

namespace memlend::metrics {

std::string ListenAddress::text() const { return host + ":" + std::to_string(port); }

Expected<ListenAddress> parse_listen_address(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Error{"\"" + std::string(text) + "\" " + why + " (example: " + std::string(default_address) + ")"};
  };
  if (!text.empty() && text.front() == '[') return bad("is IPv6, which this build's HTTP server cannot serve");
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) return bad("is not HOST:PORT");
  std::string host(text.substr(0, colon));
  std::string_view port_text = text.substr(colon + 1);
  if (host.find(':') != std::string::npos) return bad("is not HOST:PORT");
  if (host == "localhost") host = "127.0.0.1";
  in_addr probe{};
  if (inet_pton(AF_INET, host.c_str(), &probe) != 1)
    return bad("does not start with an IPv4 address or localhost");
  unsigned long port = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9' || port > 65535) return bad("does not end with a port from 0 to 65535");
    port = port * 10 + static_cast<unsigned long>(c - '0');
  }
  if (port > 65535) return bad("does not end with a port from 0 to 65535");
  return ListenAddress{host, static_cast<std::uint16_t>(port)};
}

namespace {

// civetweb says only "possible problem binding to port"; binding once
// ourselves first finds errno's reason (in use, not an address of this node,
// privileged port). SO_REUSEADDR as civetweb sets it, so that a port in
// TIME_WAIT is not reported as taken.
std::optional<std::string> bind_problem(const ListenAddress& a) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string(std::strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(a.port);
  inet_pton(AF_INET, a.host.c_str(), &sa.sin_addr);
  std::optional<std::string> problem;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, 1) != 0)
    problem = std::strerror(errno);
  close(fd);
  return problem;
}

// prometheus-cpp keeps its civetweb server to itself; civetweb's
// begin_request callback, which it passes through, sees every request first
// and may answer it. Callbacks carry no context of ours, so each server's
// readiness check is found by the port the request came in on.
struct Probes {
  std::mutex mutex;
  std::map<int, ReadinessCheck> by_port;
};
Probes& probes() {
  static Probes p;
  return p;
}

int answer(mg_connection* conn, int status, const char* reason, const std::string& body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            status, reason, body.size());
  mg_write(conn, body.data(), body.size());
  return status;  // non-zero: answered, civetweb goes no further
}

int begin_request(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  if (!info || !info->local_uri) return 0;
  std::string_view uri = info->local_uri;
  if (uri == "/healthz") return answer(conn, 200, "OK", "ok\n");
  if (uri != "/readyz") return 0;
  ReadinessCheck check;
  {
    std::lock_guard<std::mutex> lock(probes().mutex);
    auto it = probes().by_port.find(info->server_port);
    if (it == probes().by_port.end()) return 0;
    check = it->second;
  }
  auto why = check();
  return why ? answer(conn, 503, "Service Unavailable", *why + "\n") : answer(conn, 200, "OK", "ready\n");
}

const CivetCallbacks& callbacks() {
  static const CivetCallbacks c = [] {
    CivetCallbacks cb;
    cb.begin_request = begin_request;
    return cb;
  }();
  return c;
}

}  // namespace

Expected<std::unique_ptr<HttpExposer>> HttpExposer::start(const Registry& registry, std::string_view address,
                                                         const ExposerLimits& limits, ReadinessCheck ready) {
  auto a = parse_listen_address(address);
  if (!a) return a.error();
  if (auto problem = bind_problem(*a)) return Error{"cannot listen on " + a->text() + ": " + *problem};
  std::unique_ptr<HttpExposer> e(new HttpExposer);
  try {
    // civetweb 1.15's option names (Debian 12).
    e->exposer_ = std::make_unique<prometheus::Exposer>(std::vector<std::string>{
        "listening_ports", a->text(),
        "num_threads", std::to_string(std::max(1, limits.threads)),
        "request_timeout_ms", std::to_string(std::max<long long>(1, limits.request_timeout.count())),
        "enable_keep_alive", "no"}, &callbacks());
  } catch (const std::exception& x) {
    return Error{"cannot listen on " + a->text() + ": " + x.what()};
  }
  e->exposer_->RegisterCollectable(registry.collectable());
  e->address_ = *a;
  auto ports = e->exposer_->GetListeningPorts();
  if (!ports.empty()) e->address_.port = static_cast<std::uint16_t>(ports.front());
  if (ready) {
    std::lock_guard<std::mutex> lock(probes().mutex);
    probes().by_port[e->address_.port] = std::move(ready);
    e->ready_port_ = e->address_.port;
  }
  return e;
}

HttpExposer::~HttpExposer() {
  // The server first: none of its threads may be in the check when it goes.
  exposer_.reset();
  if (ready_port_ >= 0) {
    std::lock_guard<std::mutex> lock(probes().mutex);
    probes().by_port.erase(ready_port_);
  }
}

}  // namespace memlend::metrics
