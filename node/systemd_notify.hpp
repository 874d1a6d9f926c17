// systemd's notification protocol (sd_notify) for `memlend run` under a
// Type=notify unit: READY=1, STATUS=, WATCHDOG=1, STOPPING=1. Without
// NOTIFY_SOCKET in the environment (a terminal, a test, another service
// manager) every call does nothing.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace memlend::systemd {

// How often systemd wants WATCHDOG=1 (WatchdogSec= of the unit, passed as
// WATCHDOG_USEC): nothing when it does not watch this process.
std::optional<std::chrono::microseconds> watchdog_interval();

// Sends the newline-separated assignments in `state`, e.g. "READY=1\nSTATUS=...".
void notify(const std::string& state);

}  // namespace memlend::systemd
