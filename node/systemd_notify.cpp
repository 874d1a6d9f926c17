#include "node/systemd_notify.hpp"

#include <systemd/sd-daemon.h>

namespace memlend::systemd {

std::optional<std::chrono::microseconds> watchdog_interval() {
  std::uint64_t usec = 0;
  // 0 (unset environment) keeps WATCHDOG_USEC for the processes memlend never starts anyway.
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
  return std::chrono::microseconds(usec);
}

void notify(const std::string& state) {
  // Best effort: a service manager that cannot be told is no reason to stop.
  (void)sd_notify(0, state.c_str());
}

}  // namespace memlend::systemd
