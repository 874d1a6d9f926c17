#define BOOST_TEST_MODULE host_proc
#include <boost/test/unit_test.hpp>

// The host's /proc readings: each parser against texts the kernel writes (and
// texts it never would), then the readers against this machine's own /proc.

#include "firmware_hooks/host_proc.hpp"

#include <unistd.h>

#include <string>

using namespace memlend;
using namespace memlend::platform::host_proc;

BOOST_AUTO_TEST_CASE(meminfo_gives_total_and_available_in_mib) {
  auto m = parse_meminfo("MemTotal:       16314660 kB\nMemFree:         1021100 kB\nMemAvailable:    8157330 kB\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(m), (m ? "" : m.error().message));
  BOOST_TEST(m->total_mib == 15932);
  BOOST_TEST(m->available_mib == 7966);
}

BOOST_AUTO_TEST_CASE(meminfo_without_available_or_with_junk_is_an_error) {
  BOOST_TEST(!parse_meminfo("MemTotal: 1024 kB\n"));
  BOOST_TEST(!parse_meminfo("MemTotal: x kB\nMemAvailable: 1 kB\n"));
  BOOST_TEST(!parse_meminfo("MemTotal: 1024 MB\nMemAvailable: 1 kB\n"));
  BOOST_TEST(!parse_meminfo("MemTotal: 1024 kB\nMemAvailable: 2048 kB\n"));
  BOOST_TEST(!parse_meminfo("MemTotal: 99999999999999999999999 kB\nMemAvailable: 1 kB\n"));
  BOOST_TEST(!parse_meminfo(""));
  auto e = parse_meminfo("MemTotal: \x1b[31m kB\n");
  BOOST_TEST_REQUIRE(!e);
  BOOST_TEST((e.error().code == ErrorCode::invalid_input));
  BOOST_TEST(e.error().message.find('\x1b') == std::string::npos);
}

BOOST_AUTO_TEST_CASE(stat_counts_busy_and_all_seconds_and_the_cpus) {
  std::string text =
      "cpu  100 20 30 400 50 6 7 8 90 10\ncpu0 50 10 15 200 25 3 3 4 0 0\ncpu1 50 10 15 200 25 3 4 4 0 0\n"
      "intr 1 2 3\nctxt 5\n";
  auto t = parse_stat(text, 100);
  BOOST_TEST_REQUIRE(static_cast<bool>(t), (t ? "" : t.error().message));
  // busy: user nice system irq softirq steal; guest time is inside user and nice.
  BOOST_TEST(t->busy_s == 1.71, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(t->total_s == 6.21, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(t->cpus == 2);
  // An old kernel's seven fields.
  auto old = parse_stat("cpu 1 2 3 4 5 6 7\ncpu0 1 2 3 4 5 6 7\n", 100);
  BOOST_TEST_REQUIRE(static_cast<bool>(old));
  BOOST_TEST(old->total_s == 0.28, boost::test_tools::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(stat_that_is_not_tick_counts_is_an_error) {
  BOOST_TEST(!parse_stat("cpu 1 2 x 4\ncpu0 1 2 3 4\n", 100));
  BOOST_TEST(!parse_stat("cpu 1 2\ncpu0 1 2 3 4\n", 100));
  BOOST_TEST(!parse_stat("cpu 1 2 3 4 5\n", 100));  // no cpuN line
  BOOST_TEST(!parse_stat("intr 5\n", 100));
  BOOST_TEST(!parse_stat("cpu 1 2 3 4 5\ncpu0 1 2 3 4 5\n", 0));
  BOOST_TEST(!parse_stat("cpu 1 2 3 -4 5\ncpu0 1 2 3 4 5\n", 100));
}

BOOST_AUTO_TEST_CASE(cpu_clock_from_cpuinfo_or_cpufreq) {
  auto mhz = parse_cpuinfo_mhz("processor\t: 0\ncpu MHz\t\t: 1200.000\nprocessor\t: 1\ncpu MHz\t\t: 2445.426\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(mhz));
  BOOST_TEST(*mhz == 2445);
  BOOST_TEST(!parse_cpuinfo_mhz("processor : 0\n"));
  BOOST_TEST(!parse_cpuinfo_mhz("cpu MHz : fast\n"));
  BOOST_TEST(!parse_cpuinfo_mhz("cpu MHz : nan\n"));
  auto khz = parse_cpufreq_khz("3400000\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(khz));
  BOOST_TEST(*khz == 3400);
  BOOST_TEST(!parse_cpufreq_khz("\n"));
  BOOST_TEST(!parse_cpufreq_khz("0\n"));
  BOOST_TEST(!parse_cpufreq_khz("12 34\n"));
}

BOOST_AUTO_TEST_CASE(pressure_gives_some_and_full_avg10) {
  auto p = parse_pressure("some avg10=1.25 avg60=0.10 avg300=0.58 total=110322807\n"
                          "full avg10=0.50 avg60=0.07 avg300=0.44 total=55762293\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(p));
  BOOST_TEST(*p->some_avg10 == 1.25);
  BOOST_TEST(*p->full_avg10 == 0.5);
  auto cpu = parse_pressure("some avg10=3.00 avg60=0.10 avg300=0.58 total=1\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(cpu));
  BOOST_TEST(!cpu->full_avg10);
  BOOST_TEST(!parse_pressure("some avg10=101.0 total=1\n"));
  BOOST_TEST(!parse_pressure("some avg60=1.0\n"));
  BOOST_TEST(!parse_pressure("nothing here\n"));
}

BOOST_AUTO_TEST_CASE(pid_stat_counts_from_the_last_parenthesis) {
  // A command may hold blanks and parentheses: "a) b (c".
  std::string text = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 3 0 12345 0 0\n";
  auto s = parse_pid_cpu_seconds(text, 100);
  BOOST_TEST_REQUIRE(static_cast<bool>(s), (s ? "" : s.error().message));
  BOOST_TEST(*s == 4.0);
  BOOST_TEST(!parse_pid_cpu_seconds("4242 (x S 1 2\n", 100));
  BOOST_TEST(!parse_pid_cpu_seconds("4242 (x) S 1 2 3\n", 100));
  BOOST_TEST(!parse_pid_cpu_seconds("4242 (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 -5 150 0\n", 100));
}

BOOST_AUTO_TEST_CASE(status_rss_and_cgroup_throttling) {
  auto rss = parse_status_rss_mib("Name:\tqemu\nVmPeak:\t 900000 kB\nVmRSS:\t  524288 kB\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(rss));
  BOOST_TEST(*rss == 512);
  BOOST_TEST(!parse_status_rss_mib("Name:\tkthreadd\n"));
  auto v1 = parse_cpu_stat_throttled_s("nr_periods 10\nnr_throttled 2\nthrottled_time 1500000000\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(v1));
  BOOST_TEST(*v1 == 1.5);
  auto v2 = parse_cpu_stat_throttled_s("usage_usec 100\nnr_throttled 2\nthrottled_usec 250000\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(v2));
  BOOST_TEST(*v2 == 0.25);
  BOOST_TEST(!parse_cpu_stat_throttled_s("usage_usec 100\n"));
  BOOST_TEST(!parse_cpu_stat_throttled_s("throttled_usec lots\n"));
}

BOOST_AUTO_TEST_CASE(cpu_cgroup_is_found_under_v1_or_v2) {
  std::string v1_mounts =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
  auto dir = cpu_cgroup_dir(v1_mounts, "4:memory:/x\n2:cpu,cpuacct:/qemu.slice/100.scope\n0::/qemu.slice\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(dir), (dir ? "" : dir.error().message));
  BOOST_TEST(*dir == "/sys/fs/cgroup/cpu,cpuacct/qemu.slice/100.scope");

  std::string v2_mounts = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
  auto v2 = cpu_cgroup_dir(v2_mounts, "0::/qemu.slice/100.scope\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(v2));
  BOOST_TEST(*v2 == "/sys/fs/cgroup/qemu.slice/100.scope");
  auto root = cpu_cgroup_dir(v2_mounts, "0::/\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(root));
  BOOST_TEST(*root == "/sys/fs/cgroup");
  // A container's mount of its own subtree; a blank in the mount point.
  auto sub = cpu_cgroup_dir("30 23 0:26 /lxc/1 /sys/fs/my\\040cg rw - cgroup2 cgroup2 rw\n", "0::/lxc/1/vm\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(sub));
  BOOST_TEST(*sub == "/sys/fs/my cg/vm");
  BOOST_TEST(!cpu_cgroup_dir(v2_mounts, "0::/../../etc\n"));
  BOOST_TEST(!cpu_cgroup_dir("", "0::/\n"));
  BOOST_TEST(!cpu_cgroup_dir(v2_mounts, "garbage"));
}

BOOST_AUTO_TEST_CASE(this_host_reads_from_its_own_proc) {
  auto h = read_host();
  BOOST_TEST_REQUIRE(static_cast<bool>(h), (h ? "" : h.error().message));
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  BOOST_TEST(h->name == std::string(name));
  BOOST_TEST(h->memory_mib > 0);
  BOOST_TEST(h->available_mib > 0);
  BOOST_TEST(h->available_mib <= h->memory_mib);
  BOOST_TEST(h->cpus >= 1);
  BOOST_TEST(h->cpus == static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN)));
  BOOST_TEST_REQUIRE(h->cpu_busy_s.has_value());
  BOOST_TEST(*h->cpu_busy_s <= *h->cpu_total_s);
  BOOST_TEST_MESSAGE("host " << h->name << ": " << h->memory_mib << " MiB, " << h->available_mib << " available, "
                             << h->cpus << " cpus, " << h->cpu_mhz << " MHz in all, memory pressure "
                             << (h->memory_pressure_some ? std::to_string(*h->memory_pressure_some) : "absent"));
  if (::access("/proc/pressure/memory", R_OK) == 0) BOOST_TEST(h->memory_pressure_some.has_value());
  BOOST_TEST(read_host("configured")->name == "configured");
}

BOOST_AUTO_TEST_CASE(this_process_reads_its_cpu_and_rss) {
  auto before = read_process(::getpid());
  BOOST_TEST_REQUIRE(static_cast<bool>(before), (before ? "" : before.error().message));
  volatile double x = 0;
  for (int i = 0; i < 50000000; ++i) x = x + i * 0.5;
  auto after = read_process(::getpid());
  BOOST_TEST_REQUIRE(static_cast<bool>(after));
  BOOST_TEST_REQUIRE(after->cpu_s.has_value());
  BOOST_TEST(*after->cpu_s > *before->cpu_s);
  BOOST_TEST(after->rss_mib.value_or(0) > 0);
  BOOST_TEST_MESSAGE("cpu " << *after->cpu_s << " s, rss " << after->rss_mib.value_or(-1) << " MiB, throttled "
                            << (after->cpu_throttled_s ? std::to_string(*after->cpu_throttled_s) : "absent"));
  auto gone = read_process(0x3ffffff);
  BOOST_TEST_REQUIRE(!gone);
  BOOST_TEST((gone.error().code == ErrorCode::lost));
}

BOOST_AUTO_TEST_CASE(a_file_past_its_cap_is_an_error) {
  auto capped = read_file("/proc/self/status", 16);
  BOOST_TEST_REQUIRE(!capped);
  BOOST_TEST((capped.error().code == ErrorCode::invalid_input));
  BOOST_TEST(!read_file("/proc/no-such-file"));
}
