#include "cli/metrics_option.hpp"

#include <spdlog/spdlog.h>

namespace memlend::cli {

CLI::Option* add_metrics_option(CLI::App* cmd, std::string& address) {
  return cmd->add_option("--metrics", address,
                         "Serve Prometheus metrics at http://ADDR/metrics (IPv4:PORT, e.g. " +
                             std::string(metrics::default_address) + "; port 0 picks a free one)");
}

Expected<std::unique_ptr<metrics::HttpExposer>> serve_metrics(const metrics::Registry& registry,
                                                             const std::string& address) {
  auto e = metrics::HttpExposer::start(registry, address);
  if (!e) return Error{"--metrics: " + e.error().message};
  spdlog::info("serving metrics at http://{}/metrics", (*e)->address().text());
  return e;
}

}  // namespace memlend::cli
