#include "firmware_hooks/host_proc.hpp"

#include "core/text.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <vector>

namespace memlend::platform::host_proc {

namespace {

constexpr std::int64_t kib_per_mib = 1024;

// What a message quotes of a file: short and printable, since it may be anything.
std::string quote(std::string_view text) {
  constexpr std::size_t shown = 60;
  return "'" + one_line(text.substr(0, shown)) + (text.size() > shown ? "...'" : "'");
}

Error bad(const std::string& what) { return Error{what, ErrorCode::invalid_input}; }

// Calls `f` with each line, without its '\n', until it returns false.
template <class F>
void each_line(std::string_view text, F f) {
  while (!text.empty()) {
    auto end = text.find('\n');
    std::string_view line = text.substr(0, end);
    if (!f(line)) return;
    if (end == std::string_view::npos) return;
    text.remove_prefix(end + 1);
  }
}

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

// Fields split at runs of blanks; at most `max` of them (the rest is ignored).
std::vector<std::string_view> fields(std::string_view line, std::size_t max = 64) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size() && out.size() < max) {
    while (i < line.size() && blank(line[i])) ++i;
    std::size_t start = i;
    while (i < line.size() && !blank(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

std::optional<std::uint64_t> to_u64(std::string_view s) {
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<double> to_double(std::string_view s) {
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::fixed);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// "Key:   N kB" lines (meminfo, status): N in KiB, where the line is there.
std::optional<std::uint64_t> kib_line(std::string_view text, std::string_view key, std::string* why) {
  std::optional<std::uint64_t> found;
  each_line(text, [&](std::string_view line) {
    if (line.size() <= key.size() || line.compare(0, key.size(), key) != 0 || line[key.size()] != ':') return true;
    auto f = fields(line.substr(key.size() + 1), 3);
    auto v = f.empty() ? std::nullopt : to_u64(f[0]);
    // Far beyond any machine's memory: a counter gone wrong, not a size.
    if (!v || *v > (std::uint64_t{1} << 50) || (f.size() > 1 && f[1] != "kB")) {
      *why = std::string(key) + ": " + quote(line) + " is not a size in kB";
      return false;
    }
    found = v;
    return false;
  });
  return found;
}

std::string join(const std::string& dir, std::string_view path) {
  if (path.empty() || path == "/") return dir;
  return dir + (path.front() == '/' ? "" : "/") + std::string(path);
}

// Mount points escape blanks and backslashes as octal (\040).
std::string unescape_octal(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    bool octal = s[i] == '\\' && i + 3 < s.size();
    for (std::size_t k = 1; octal && k <= 3; ++k) octal = s[i + k] >= '0' && s[i + k] <= '7';
    if (!octal) {
      out += s[i];
      continue;
    }
    out += static_cast<char>(((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')) & 0xff);
    i += 3;
  }
  return out;
}

bool in_list(std::string_view list, std::string_view item) {
  while (!list.empty()) {
    auto comma = list.find(',');
    if (list.substr(0, comma) == item) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

Expected<MemInfo> parse_meminfo(std::string_view text) {
  std::string why;
  auto total = kib_line(text, "MemTotal", &why);
  if (!why.empty()) return bad("meminfo: " + why);
  auto available = kib_line(text, "MemAvailable", &why);
  if (!why.empty()) return bad("meminfo: " + why);
  if (!total || !available) return bad("meminfo: no MemTotal and MemAvailable lines");
  if (*total == 0 || *available > *total) return bad("meminfo: MemAvailable beyond MemTotal, or no memory");
  return MemInfo{static_cast<std::int64_t>(*total) / kib_per_mib, static_cast<std::int64_t>(*available) / kib_per_mib};
}

Expected<CpuTimes> parse_stat(std::string_view text, long user_hz) {
  if (user_hz <= 0) return bad("stat: no USER_HZ");
  std::optional<CpuTimes> times;
  int cpus = 0;
  std::string why;
  each_line(text, [&](std::string_view line) {
    if (line.compare(0, 3, "cpu") != 0) return true;
    auto f = fields(line, 12);
    if (f[0] != "cpu") {
      if (f[0].size() > 3 && to_u64(f[0].substr(3))) ++cpus;
      return true;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice]: guest
    // time is already counted in user and nice. Kernels before 2.6.11 stop at 7.
    std::uint64_t v[8] = {};
    for (std::size_t i = 1; i < f.size() && i <= 8; ++i) {
      auto n = to_u64(f[i]);
      // A tick count past 2^53 would not even be exact as a double.
      if (!n || *n > (std::uint64_t{1} << 53)) {
        why = "stat: " + quote(line) + " is not a line of tick counts";
        return false;
      }
      v[i - 1] = *n;
    }
    if (f.size() < 5) {
      why = "stat: " + quote(line) + " has too few fields";
      return false;
    }
    double busy = 0, total = 0;
    for (int i = 0; i < 8; ++i) {
      total += static_cast<double>(v[i]);
      if (i != 3 && i != 4) busy += static_cast<double>(v[i]);
    }
    times = CpuTimes{busy / static_cast<double>(user_hz), total / static_cast<double>(user_hz), 0};
    return true;
  });
  if (!why.empty()) return bad(why);
  if (!times) return bad("stat: no cpu line");
  times->cpus = cpus;
  if (cpus == 0) return bad("stat: no cpuN lines");
  return *times;
}

Expected<std::int64_t> parse_cpuinfo_mhz(std::string_view text) {
  double best = 0;
  std::string why;
  each_line(text, [&](std::string_view line) {
    if (line.compare(0, 7, "cpu MHz") != 0) return true;
    auto colon = line.find(':');
    auto f = colon == std::string_view::npos ? std::vector<std::string_view>{} : fields(line.substr(colon + 1), 2);
    auto v = f.size() == 1 ? to_double(f[0]) : std::nullopt;
    if (!v || *v <= 0 || *v > 1e6) {
      why = "cpuinfo: " + quote(line) + " is not a clock in MHz";
      return false;
    }
    if (*v > best) best = *v;
    return true;
  });
  if (!why.empty()) return bad(why);
  if (best <= 0) return bad("cpuinfo: no cpu MHz line");
  return static_cast<std::int64_t>(std::llround(best));
}

Expected<std::int64_t> parse_cpufreq_khz(std::string_view text) {
  auto f = fields(text.substr(0, text.find('\n')), 2);
  auto v = f.size() == 1 ? to_u64(f[0]) : std::nullopt;
  if (!v || *v == 0 || *v > 1000000000) return bad("cpufreq: " + quote(text) + " is not a clock in kHz");
  return static_cast<std::int64_t>(*v / 1000);
}

Expected<Pressure> parse_pressure(std::string_view text) {
  Pressure p;
  std::string why;
  each_line(text, [&](std::string_view line) {
    auto f = fields(line, 6);
    if (f.empty()) return true;
    std::optional<double>* slot = f[0] == "some" ? &p.some_avg10 : f[0] == "full" ? &p.full_avg10 : nullptr;
    if (!slot) return true;
    std::optional<double> v;
    for (std::size_t i = 1; i < f.size() && !v; ++i)
      if (f[i].compare(0, 6, "avg10=") == 0) v = to_double(f[i].substr(6));
    if (!v || *v < 0 || *v > 100) {
      why = "pressure: " + quote(line) + " has no avg10 share";
      return false;
    }
    *slot = v;
    return true;
  });
  if (!why.empty()) return bad(why);
  if (!p.some_avg10 && !p.full_avg10) return bad("pressure: no some or full line");
  return p;
}

Expected<double> parse_pid_cpu_seconds(std::string_view text, long user_hz) {
  if (user_hz <= 0) return bad("stat: no USER_HZ");
  auto close = text.rfind(')');
  if (close == std::string_view::npos) return bad("pid stat: " + quote(text) + " has no (command)");
  // Fields 3 (state) onwards; utime and stime are fields 14 and 15.
  auto f = fields(text.substr(close + 1), 14);
  if (f.size() < 13) return bad("pid stat: too few fields after the command");
  auto utime = to_u64(f[11]), stime = to_u64(f[12]);
  if (!utime || !stime || *utime > (std::uint64_t{1} << 52) || *stime > (std::uint64_t{1} << 52))
    return bad("pid stat: utime and stime " + quote(f[11]) + " " + quote(f[12]) + " are not tick counts");
  return static_cast<double>(*utime + *stime) / static_cast<double>(user_hz);
}

Expected<std::int64_t> parse_status_rss_mib(std::string_view text) {
  std::string why;
  auto rss = kib_line(text, "VmRSS", &why);
  if (!why.empty()) return bad("status: " + why);
  if (!rss) return bad("status: no VmRSS line");
  return static_cast<std::int64_t>(*rss) / kib_per_mib;
}

Expected<double> parse_cpu_stat_throttled_s(std::string_view text) {
  std::optional<double> seconds;
  std::string why;
  each_line(text, [&](std::string_view line) {
    auto f = fields(line, 3);
    if (f.size() != 2 || (f[0] != "throttled_time" && f[0] != "throttled_usec")) return true;
    auto v = to_u64(f[1]);
    if (!v) {
      why = "cpu.stat: " + quote(line) + " is not a count";
      return false;
    }
    seconds = static_cast<double>(*v) / (f[0] == "throttled_time" ? 1e9 : 1e6);
    return false;
  });
  if (!why.empty()) return bad(why);
  if (!seconds) return bad("cpu.stat: no throttled_time or throttled_usec");
  return *seconds;
}

Expected<CgroupDir> cgroup_dir(std::string_view mountinfo, std::string_view pid_cgroup, std::string_view controller) {
  std::string v1_mount, v1_root, v2_mount, v2_root;
  each_line(mountinfo, [&](std::string_view line) {
    // ID PARENT MAJ:MIN ROOT MOUNT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER_OPTIONS
    auto f = fields(line, 32);
    std::size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (dash < 5 || dash + 3 >= f.size()) return true;
    if (f[dash + 1] == "cgroup" && v1_mount.empty() && in_list(f[dash + 3], controller)) {
      v1_root = unescape_octal(f[3]);
      v1_mount = unescape_octal(f[4]);
    } else if (f[dash + 1] == "cgroup2" && v2_mount.empty()) {
      v2_root = unescape_octal(f[3]);
      v2_mount = unescape_octal(f[4]);
    }
    return true;
  });
  std::optional<CgroupDir> found;
  each_line(pid_cgroup, [&](std::string_view line) {
    // HIERARCHY:CONTROLLERS:PATH, where v2's is 0::PATH.
    auto first = line.find(':');
    auto second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos) return true;
    std::string_view controllers = line.substr(first + 1, second - first - 1);
    std::string_view path = line.substr(second + 1);
    bool v1 = !v1_mount.empty() && in_list(controllers, controller);
    bool v2 = v1_mount.empty() && !v2_mount.empty() && line.compare(0, first, "0") == 0 && controllers.empty();
    if (!v1 && !v2) return true;
    const std::string& root = v1 ? v1_root : v2_root;
    // The mount may show only a subtree of the hierarchy (a container's).
    if (root != "/" && path.compare(0, root.size(), root) == 0) path.remove_prefix(root.size());
    // A path that climbs out of the mount is no cgroup memlend should read.
    if (path.find("/..") != std::string_view::npos) return true;
    found = CgroupDir{join(v1 ? v1_mount : v2_mount, path), v1};
    return false;
  });
  if (!found) return Error{"no " + std::string(controller) + " cgroup for the process", ErrorCode::unavailable};
  return *found;
}

Expected<std::string> cpu_cgroup_dir(std::string_view mountinfo, std::string_view pid_cgroup) {
  auto dir = cgroup_dir(mountinfo, pid_cgroup, "cpu");
  if (!dir) return dir.error();
  return dir->path;
}

Expected<std::string> read_file(const std::string& path, std::size_t cap) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return Error{path + ": " + std::strerror(err), err == ENOENT || err == ESRCH ? ErrorCode::lost : ErrorCode::io};
  }
  std::string text;
  char chunk[16384];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Error{path + ": " + std::strerror(err), err == ESRCH ? ErrorCode::lost : ErrorCode::io};
    }
    if (n == 0) break;
    text.append(chunk, static_cast<std::size_t>(n));
    if (text.size() > cap) {
      ::close(fd);
      return Error{path + ": longer than " + std::to_string(cap) + " bytes", ErrorCode::invalid_input};
    }
  }
  ::close(fd);
  return text;
}

Expected<HostReading> read_host(const std::string& name) {
  HostReading h;
  h.name = name;
  if (h.name.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) != 0) return Error{"gethostname failed", ErrorCode::io};
    h.name = host;
  }
  auto meminfo = read_file("/proc/meminfo");
  if (!meminfo) return meminfo.error();
  auto mem = parse_meminfo(*meminfo);
  if (!mem) return mem.error();
  h.memory_mib = mem->total_mib;
  h.available_mib = mem->available_mib;

  long user_hz = ::sysconf(_SC_CLK_TCK);
  auto stat = read_file("/proc/stat");
  if (!stat) return stat.error();
  auto times = parse_stat(*stat, user_hz);
  if (!times) return times.error();
  h.cpus = times->cpus;
  h.cpu_busy_s = times->busy_s;
  h.cpu_total_s = times->total_s;

  // The nominal clock where cpufreq tells it (Intel's base_frequency, else
  // the highest the driver allows), else what cpuinfo shows now.
  std::optional<std::int64_t> mhz;
  for (const char* file : {"base_frequency", "cpuinfo_max_freq"}) {
    auto text = read_file(std::string("/sys/devices/system/cpu/cpu0/cpufreq/") + file, 4096);
    auto v = text ? parse_cpufreq_khz(*text) : Expected<std::int64_t>(text.error());
    if (v) {
      mhz = *v;
      break;
    }
  }
  if (!mhz) {
    auto cpuinfo = read_file("/proc/cpuinfo", 4 << 20);
    auto v = cpuinfo ? parse_cpuinfo_mhz(*cpuinfo) : Expected<std::int64_t>(cpuinfo.error());
    if (v) mhz = *v;
  }
  h.cpu_mhz = mhz ? *mhz * h.cpus : 0;

  // Without PSI (kernels before 4.20, or psi=0) the files are missing or
  // refuse to be read: the fields stay absent.
  if (auto text = read_file("/proc/pressure/memory", 4096)) {
    if (auto p = parse_pressure(*text)) {
      h.memory_pressure_some = p->some_avg10;
      h.memory_pressure_full = p->full_avg10;
    }
  }
  if (auto text = read_file("/proc/pressure/cpu", 4096)) {
    if (auto p = parse_pressure(*text)) h.cpu_pressure_some = p->some_avg10;
  }
  return h;
}

Expected<ProcessReading> read_process(pid_t pid) {
  if (pid <= 0) return Error{"no process id", ErrorCode::invalid_input};
  std::string dir = "/proc/" + std::to_string(pid);
  auto stat = read_file(dir + "/stat", 64 << 10);
  if (!stat) return Error{"process " + std::to_string(pid) + ": " + stat.error().message, ErrorCode::lost};
  ProcessReading r;
  if (auto cpu = parse_pid_cpu_seconds(*stat, ::sysconf(_SC_CLK_TCK))) r.cpu_s = *cpu;
  if (auto status = read_file(dir + "/status", 64 << 10)) {
    if (auto rss = parse_status_rss_mib(*status)) r.rss_mib = *rss;
  }
  auto mountinfo = read_file("/proc/self/mountinfo", 8 << 20);
  auto cgroups = read_file(dir + "/cgroup", 64 << 10);
  if (mountinfo && cgroups) {
    if (auto cg = cpu_cgroup_dir(*mountinfo, *cgroups)) {
      if (auto cpu_stat = read_file(*cg + "/cpu.stat", 64 << 10)) {
        if (auto throttled = parse_cpu_stat_throttled_s(*cpu_stat)) r.cpu_throttled_s = *throttled;
      }
    }
  }
  return r;
}

}  // namespace memlend::platform::host_proc
