// `--metrics ADDR|off` for the commands that serve Prometheus metrics (run, agent).
#pragma once

#include "core/expected.hpp"
#include "metrics/http_exposer.hpp"

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace memlend::cli {

// Adds --metrics ADDR|off; `address` is left empty unless given. `when_unset`
// ends --help's sentence "Without it, ...".
CLI::Option* add_metrics_option(CLI::App* cmd, std::string& address,
                                std::string_view when_unset = "nothing is served");

// What --metrics asks for.
struct MetricsRequest {
  std::string address;    // empty: no metrics
  bool implicit = false;  // the command's default, not the operator's choice
};

// `given` is --metrics as given (empty when unset), `fallback` the command's
// default address (empty: none). A malformed address is an error reading
// "--metrics: ...", so that it is bad input (exit 2) before anything starts.
Expected<MetricsRequest> metrics_request(const std::string& given, std::string_view fallback);

// Serves `registry` at `address`; the error reads "--metrics: ..." so that
// the command can hand it to bad_input (exit 2) as it is.
// `ready`, when given, answers /readyz beside /metrics.
Expected<std::unique_ptr<metrics::HttpExposer>> serve_metrics(const metrics::Registry& registry,
                                                             const std::string& address,
                                                             metrics::ReadinessCheck ready = {});

// The same for a request; a default address that cannot be listened on is
// only a warning and no server: the demo should not fail because another
// demo, or another program, holds the port that nobody asked for.
Expected<std::unique_ptr<metrics::HttpExposer>> serve_metrics(const metrics::Registry& registry,
                                                             const MetricsRequest& request,
                                                             metrics::ReadinessCheck ready = {});

}  // namespace memlend::cli
