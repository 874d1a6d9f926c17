#include "cli/metrics_option.hpp"

#include <spdlog/spdlog.h>

namespace memlend::cli {

CLI::Option* add_metrics_option(CLI::App* cmd, std::string& address, std::string_view when_unset) {
  return cmd->add_option("--metrics", address,
                         "Serve Prometheus metrics at http://ADDR/metrics (IPv4:PORT, e.g. " +
                             std::string(metrics::default_address) + "; port 0 picks a free one), or off.\n"
                             "Without it, " + std::string(when_unset));
}

Expected<MetricsRequest> metrics_request(const std::string& given, std::string_view fallback) {
  if (given == "off") return MetricsRequest{};
  MetricsRequest r{given.empty() ? std::string(fallback) : given, given.empty()};
  if (r.address.empty()) return r;
  auto parsed = metrics::parse_listen_address(r.address);
  if (!parsed) return Error{"--metrics: " + parsed.error().message};
  return r;
}

Expected<std::unique_ptr<metrics::HttpExposer>> serve_metrics(const metrics::Registry& registry,
                                                             const std::string& address,
                                                             metrics::ReadinessCheck ready) {
  auto e = metrics::HttpExposer::start(registry, address, {}, std::move(ready));
  if (!e) return Error{"--metrics: " + e.error().message};
  spdlog::info("serving metrics at http://{}/metrics", (*e)->address().text());
  return e;
}

Expected<std::unique_ptr<metrics::HttpExposer>> serve_metrics(const metrics::Registry& registry,
                                                             const MetricsRequest& request,
                                                             metrics::ReadinessCheck ready) {
  if (request.address.empty()) return std::unique_ptr<metrics::HttpExposer>{};
  auto e = serve_metrics(registry, request.address, std::move(ready));
  if (e || !request.implicit) return e;
  spdlog::warn("{}; running without metrics (--metrics ADDR serves them elsewhere)", e.error().message);
  return std::unique_ptr<metrics::HttpExposer>{};
}

}  // namespace memlend::cli
