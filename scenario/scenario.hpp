// The scenario file (DESIGN.md, "Scenario file"): a cluster snapshot for
// `plan`, and the simulated platform's script for `run`.
#pragma once

#include "core/expected.hpp"
#include "policy/model.hpp"

#include <string>
#include <string_view>

namespace memlend::platform {

// Parses and checks a scenario. `origin` names the source in error messages
// ("FILE: hosts[1].memory_mib: must be ..."). Every key is checked: an
// unknown key, a wrong type, an absurd size, an unknown host or heuristic, a
// duplicate name or a duplicate key is an error; nothing is half-loaded.
Expected<policy::Scenario> parse_scenario(std::string_view text, const std::string& origin);
Expected<policy::Scenario> load_scenario(const std::string& path);
// The text of a scenario file, for a caller that needs the very bytes it
// parses (a fingerprint, --show-scenario): only a regular file, at most 64
// MiB (read_input_file).
Expected<std::string> read_scenario_file(const std::string& path);

// Limits a scenario may not pass: beyond them a number is a typo, not a cluster.
inline constexpr std::int64_t max_mib = std::int64_t{1} << 30;  // 1 PiB
inline constexpr std::int64_t max_mhz = 100'000'000;           // 100 THz
inline constexpr std::int64_t max_seconds = 1'000'000'000;     // ~31 years

}  // namespace memlend::platform
