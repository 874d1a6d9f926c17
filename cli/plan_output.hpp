// The plan output of DESIGN.md ("Plan output"): a product interface, so the
// key names here are stable.
#pragma once

#include "policy/cluster.hpp"

#include <nlohmann/json.hpp>

#include <vector>

namespace memlend::cli {

nlohmann::ordered_json decision_json(const policy::Cluster& c, const policy::Decision& d);
nlohmann::ordered_json plan_json(const policy::Cluster& c, const std::vector<policy::Decision>& ds);
// One line a person reads: "VM2 on A: remote_memory: <reason>".
std::string decision_line(const policy::Cluster& c, const policy::Decision& d);

}  // namespace memlend::cli
