// The process families every Prometheus client library exports and operators
// look for (process_start_time_seconds, process_resident_memory_bytes,
// process_open_fds, process_cpu_seconds_total, ...): prometheus-cpp has none.
// They are read from /proc/self when scraped, so they cost nothing between
// scrapes and are never stale.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace prometheus {
struct MetricFamily;
}

namespace memlend::metrics {

struct ProcessStats {
  double cpu_seconds = 0;      // user + system
  double start_time_s = 0;     // since the Unix epoch
  double resident_bytes = 0;
  double virtual_bytes = 0;
  double open_fds = 0;
  double max_fds = 0;
};

// From the text of /proc/self/stat and the boot time of /proc/stat (`btime`);
// nullopt when the text is not what Linux writes.
std::optional<ProcessStats> parse_process_stat(std::string_view stat, std::string_view proc_stat, long ticks_per_s,
                                               long page_size);

// This process now; nullopt where /proc cannot be read.
std::optional<ProcessStats> read_process_stats();

// The families, empty where /proc cannot be read.
std::vector<prometheus::MetricFamily> process_families();

}  // namespace memlend::metrics
