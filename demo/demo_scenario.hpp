// The built-in demo scenario, what `memlend run` plays without a file.
#pragma once

#include <string_view>

namespace memlend::demo {

// The clusters of the patent's FIG. 2 and FIG. 3 side by side (one fabric
// each), a VM whose demand grows, a donor that fails and comes back, and a
// demand that falls back.
std::string_view builtin_demo_scenario();

}  // namespace memlend::demo
