// `--metrics ADDR` for the commands that serve Prometheus metrics (run).
#pragma once

#include "actors/policy/expected.hpp"
#include "metrics/http_exposer.hpp"

#include <CLI/CLI.hpp>

#include <memory>
#include <string>

namespace memlend::cli {

// Adds --metrics ADDR; `address` is left empty unless given (no metrics).
CLI::Option* add_metrics_option(CLI::App* cmd, std::string& address);

// Serves `registry` at `address`; the error reads "--metrics: ..." so that
// the command can hand it to bad_input (exit 2) as it is.
Expected<std::unique_ptr<metrics::HttpExposer>> serve_metrics(const metrics::Registry& registry,
                                                             const std::string& address);

}  // namespace memlend::cli
