// What `memlend inspect` reads from a node's platform, for the commands that
// show it: inspect itself, and support-bundle's inspect.json.
#pragma once

#include "core/expected.hpp"
#include "firmware_hooks/demand.hpp"
#include "cli/platform_flags.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace memlend::cli {

struct Inspection {
  std::string backend;
  platform::NodeReading reading;
  std::vector<platform::VmDemand> demand;  // one per VM of the reading
};

// Reads the platform the flags name twice, `interval_s` apart (once for 0):
// a rate and the demand estimator's hysteresis both need two readings.
// `scenario` and `host` serve `sim` only. An error is one line: a flag's
// ("--platform: ...", ErrorCode::invalid_input) or the reading's ("inspect: qemu: ...").
Expected<Inspection> inspect_node(const PlatformFlags& flags, const std::string& scenario, const std::string& host,
                                  double interval_s);

// `memlend inspect --json`'s document.
nlohmann::ordered_json inspection_json(const Inspection& i);

}  // namespace memlend::cli
