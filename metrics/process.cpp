#include "metrics/process.hpp"

#include <prometheus/metric_family.h>

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace memlend::metrics {

namespace {

std::string slurp(const char* path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

prometheus::MetricFamily family(const char* name, const char* help, prometheus::MetricType type, double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  f.metric.push_back(m);
  return f;
}

}  // namespace

std::optional<ProcessStats> parse_process_stat(std::string_view stat, std::string_view proc_stat, long ticks_per_s,
                                               long page_size) {
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  auto close = stat.rfind(')');
  if (close == std::string_view::npos || ticks_per_s <= 0 || page_size <= 0) return std::nullopt;
  std::istringstream fields{std::string(stat.substr(close + 1))};
  // Fields 3.. of proc(5): state, then numbers; utime is 14, stime 15,
  // starttime 22, vsize 23, rss 24.
  std::string state;
  fields >> state;
  std::vector<unsigned long long> n;
  unsigned long long v = 0;
  while (n.size() < 22 && fields >> v) n.push_back(v);
  if (n.size() < 22) return std::nullopt;
  auto field = [&](int k) { return static_cast<double>(n[static_cast<std::size_t>(k - 4)]); };
  std::optional<double> btime;
  std::istringstream lines{std::string(proc_stat)};
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind("btime ", 0) == 0) btime = std::strtod(line.c_str() + 6, nullptr);
  if (!btime) return std::nullopt;
  ProcessStats s;
  s.cpu_seconds = (field(14) + field(15)) / static_cast<double>(ticks_per_s);
  s.start_time_s = *btime + field(22) / static_cast<double>(ticks_per_s);
  s.virtual_bytes = field(23);
  s.resident_bytes = field(24) * static_cast<double>(page_size);
  return s;
}

std::optional<ProcessStats> read_process_stats() {
  auto s = parse_process_stat(slurp("/proc/self/stat"), slurp("/proc/stat"), ::sysconf(_SC_CLK_TCK),
                              ::sysconf(_SC_PAGESIZE));
  if (!s) return std::nullopt;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    double n = 0;
    while (const dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    s->open_fds = n - 1;  // the directory's own descriptor
  }
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0) s->max_fds = static_cast<double>(r.rlim_cur);
  return s;
}

std::vector<prometheus::MetricFamily> process_families() {
  auto s = read_process_stats();
  if (!s) return {};
  using prometheus::MetricType;
  return {
      family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", MetricType::Counter,
             s->cpu_seconds),
      family("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
             MetricType::Gauge, s->start_time_s),
      family("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge, s->resident_bytes),
      family("process_virtual_memory_bytes", "Virtual memory size in bytes.", MetricType::Gauge, s->virtual_bytes),
      family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge, s->open_fds),
      family("process_max_fds", "Maximum number of open file descriptors.", MetricType::Gauge, s->max_fds),
  };
}

}  // namespace memlend::metrics
