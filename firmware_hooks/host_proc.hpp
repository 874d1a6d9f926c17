// The host and its processes as Linux tells of them in /proc and /sys: what a
// backend that drives a hypervisor through its own protocol (qemu) still reads
// from the kernel, since the hypervisor knows nothing of the node around it.
//
// Every file is text the kernel formats, but parsed as untrusted input all the
// same (a container's /proc may be anything a runtime fakes, and a fuzzer feeds
// these parsers): the parse functions take the text and return a value or an
// error, never throw, and read numbers with bounds. They are apart from the
// readers so that the tests and the fuzzer give them any text they like; this
// file's .cpp includes nothing of the project but header-only core/, so that
// the fuzzer compiles it alone.
#pragma once

#include "core/expected.hpp"
#include "firmware_hooks/node.hpp"

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace memlend::platform::host_proc {

// /proc/meminfo, in MiB. MemAvailable is the kernel's own estimate of what can
// be had without swapping; kernels before 3.14 have none, which is an error
// here rather than a guess.
struct MemInfo {
  std::int64_t total_mib = 0;
  std::int64_t available_mib = 0;
};
Expected<MemInfo> parse_meminfo(std::string_view text);

// /proc/stat's aggregate "cpu" line, in seconds across every CPU, and how many
// "cpuN" lines (online CPUs) follow it. `user_hz` is sysconf(_SC_CLK_TCK).
struct CpuTimes {
  double busy_s = 0;
  double total_s = 0;
  int cpus = 0;
};
Expected<CpuTimes> parse_stat(std::string_view text, long user_hz);

// The nominal clock of one CPU in MHz from /proc/cpuinfo: the highest "cpu MHz"
// line (the current clock of each, which a governor lowers when idle), for
// machines whose sysfs has no cpufreq.
Expected<std::int64_t> parse_cpuinfo_mhz(std::string_view text);
// A cpufreq file (base_frequency, cpuinfo_max_freq): one number in kHz, as MHz.
Expected<std::int64_t> parse_cpufreq_khz(std::string_view text);

// /proc/pressure/{memory,cpu}: the avg10 of the "some" and "full" lines, each
// absent when its line is (the cpu file of kernels before 5.13 has no "full").
struct Pressure {
  std::optional<double> some_avg10;
  std::optional<double> full_avg10;
};
Expected<Pressure> parse_pressure(std::string_view text);

// /proc/PID/stat: utime + stime in seconds. The command name is in parentheses
// and may hold anything, a ')' and blanks among it: fields count from the last ')'.
Expected<double> parse_pid_cpu_seconds(std::string_view text, long user_hz);
// /proc/PID/status's VmRSS, in MiB (a kernel thread has none: an error).
Expected<std::int64_t> parse_status_rss_mib(std::string_view text);
// A cgroup's cpu.stat: the time its tasks were throttled, in seconds, from
// v1's throttled_time (ns) or v2's throttled_usec. An error when neither is
// there (v2's root cgroup, a cgroup without the cpu controller).
Expected<double> parse_cpu_stat_throttled_s(std::string_view text);
// Where a controller's cgroup of a process is, from /proc/self/mountinfo
// (where the hierarchies are mounted) and /proc/PID/cgroup (where the process
// is in them): a directory, and whether it is a v1 hierarchy's. A v1
// hierarchy holding the controller is preferred, since a controller serves
// only one hierarchy. The memory cgroup (cgroup.hpp) is found the same way.
struct CgroupDir {
  std::string path;
  bool v1 = false;
};
Expected<CgroupDir> cgroup_dir(std::string_view mountinfo, std::string_view pid_cgroup, std::string_view controller);
// The cpu controller's: a directory with cpu.stat in it.
Expected<std::string> cpu_cgroup_dir(std::string_view mountinfo, std::string_view pid_cgroup);

// A file of /proc or /sys, read whole up to `cap` bytes (an error past it).
Expected<std::string> read_file(const std::string& path, std::size_t cap = 1 << 20);

// This host now. `name` names it; empty means its hostname. Memory and
// /proc/stat are required (an error without them); cpufreq and PSI are read
// where the kernel has them and absent otherwise.
Expected<HostReading> read_host(const std::string& name = "");

// A process on this host: its CPU seconds, RSS, and its cgroup's throttling,
// each absent where it cannot be read. An error only when the process is gone.
struct ProcessReading {
  std::optional<double> cpu_s;
  std::optional<std::int64_t> rss_mib;
  std::optional<double> cpu_throttled_s;
};
Expected<ProcessReading> read_process(pid_t pid);

}  // namespace memlend::platform::host_proc
