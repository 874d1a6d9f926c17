// libFuzzer target: the /proc and cgroup parsers (firmware_hooks/host_proc)
// fed any text. The first byte picks a second text's start for the parsers
// that take two (mountinfo and /proc/PID/cgroup); every parser sees the rest.
// Whatever comes, each returns a value within its bounds or one printable
// line, never a crash.
#include "firmware_hooks/host_proc.hpp"

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace memlend;
using namespace memlend::platform::host_proc;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

template <class T>
bool check(const Expected<T>& r) {
  if (r) return true;
  const std::string& m = r.error().message;
  require(!m.empty());
  for (unsigned char c : m) require(c >= 0x20 && c != 0x7f);
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (auto m = parse_meminfo(text); check(m)) require(m->available_mib <= m->total_mib && m->available_mib >= 0);
  if (auto s = parse_stat(text, 100); check(s))
    require(s->cpus > 0 && s->busy_s >= 0 && s->busy_s <= s->total_s && std::isfinite(s->total_s));
  if (auto mhz = parse_cpuinfo_mhz(text); check(mhz)) require(*mhz >= 0);
  if (auto khz = parse_cpufreq_khz(text); check(khz)) require(*khz >= 0);
  if (auto p = parse_pressure(text); check(p)) {
    for (const auto& v : {p->some_avg10, p->full_avg10}) require(!v || (*v >= 0 && *v <= 100));
  }
  if (auto c = parse_pid_cpu_seconds(text, 100); check(c)) require(*c >= 0 && std::isfinite(*c));
  if (auto r = parse_status_rss_mib(text); check(r)) require(*r >= 0);
  if (auto t = parse_cpu_stat_throttled_s(text); check(t)) require(*t >= 0 && std::isfinite(*t));
  std::size_t cut = data[0] * text.size() / 256;
  if (auto d = cpu_cgroup_dir(text.substr(0, cut), text.substr(cut)); check(d)) require(!d->empty());
  return 0;
}
