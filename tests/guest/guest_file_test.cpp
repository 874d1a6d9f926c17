#define BOOST_TEST_MODULE guest_file
#include <boost/test/unit_test.hpp>

// A real guest's memory on a file, the way lent memory will reach it: QEMU maps
// the file shared as a virtio-mem device's memory, the test plugs and unplugs
// it through QMP, and the guest writes and checks every byte it was given. The
// file here is a plain one in a temporary directory; the FUSE file memlend
// serves takes its place later.

#include "tests/guest/guest_common.hpp"

using namespace memlend;
using namespace memlend::test;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_CASE(a_guest_writes_every_byte_plugged_from_a_file_and_gives_it_back,
                     *boost::unit_test::precondition(can_boot)) {
  LocalMemory file(512 * mib);
  auto started = std::chrono::steady_clock::now();
  auto guest = boot_and_plug(file.file(), 512 * mib, 256 * mib, "memlend.unplug=1");
  QemuGuest& g = *guest;
  const auto& o = g.options();
  auto size = g.qmp().memory_device_size(o.device_id);
  BOOST_TEST_REQUIRE(static_cast<bool>(size));
  BOOST_TEST(*size == 256 * mib);

  std::string result = g.wait_line("MEMLEND-GUEST ", 300s);
  BOOST_TEST_MESSAGE("guest: " << result << " (" << seconds_since(started) << " s after QEMU started)");
  report_rss(g, "after the workload");
  BOOST_TEST_REQUIRE(result.find("MEMLEND-GUEST ok ") != std::string::npos, tail(g.console()));
  BOOST_TEST(field(result, "mib_plugged") == 256u);
  // The pattern filled the plugged memory, not only the boot memory beside it.
  BOOST_TEST(field(result, "mib_on_plugged") >= 200u);
  BOOST_TEST(field(result, "bytes") >= 256 * mib);

  auto unplugged = g.qmp().set_requested_size(o.device_id, 0, 120s);
  BOOST_TEST_REQUIRE(static_cast<bool>(unplugged),
                     (unplugged ? "" : unplugged.error().message) << "\n" << tail(g.console()));
  size = g.qmp().memory_device_size(o.device_id);
  BOOST_TEST_REQUIRE(static_cast<bool>(size), (size ? "" : size.error().message));
  BOOST_TEST(*size == 0u);
  std::string after = g.wait_line("MEMLEND-GUEST-UNPLUG", 60s);
  BOOST_TEST(after.find("MEMLEND-GUEST-UNPLUG ok") != std::string::npos, tail(g.console()));
  require_quit(g);
  BOOST_TEST_MESSAGE("boot, plug, workload, unplug and quit took " << seconds_since(started) << " s");
}

// The memory cgroup QEMU runs in bounds the page cache of the file the
// guest's plugged memory lives on: the guest writes well over the limit, the
// kernel writes the file's dirty pages back and drops them, and nothing is
// OOM-killed. QEMU's anonymous memory is not elastic: the guest's boot memory
// (the guest kernel touches nearly all of it at boot, in 2 MiB host pages
// where THP is on), TCG's translation cache and QEMU's own take some 280 MiB
// here, which a limit must leave room for (under 200 MiB QEMU is killed while
// the guest boots); the limit is that plus about 100 MiB of page cache.
BOOST_AUTO_TEST_CASE(a_memory_cgroup_smaller_than_the_plugged_memory_bounds_its_page_cache,
                     *boost::unit_test::precondition(can_boot_in_a_cgroup)) {
  LocalMemory file(768 * mib);
  if (file.in_ram()) {
    // tmpfs pages go nowhere but swap: QEMU is OOM-killed, which is tmpfs's
    // nature and no finding about memlend.
    BOOST_TEST_MESSAGE("skipped: the temporary directory " << file.dir.path() << " is a tmpfs");
    return;
  }
  auto started = std::chrono::steady_clock::now();
  auto guest = boot_and_plug(file.file(), 768 * mib, 640 * mib, "memlend.fill_mib=600", 384 * mib);
  QemuGuest& g = *guest;
  const auto& o = g.options();
  std::string result = g.wait_line("MEMLEND-GUEST ", 300s);
  auto stats = g.memory_cgroup()->stats();
  BOOST_TEST_REQUIRE(static_cast<bool>(stats), (stats ? "" : stats.error().message));
  BOOST_TEST_MESSAGE("guest: " << result << " (" << seconds_since(started) << " s after QEMU started)");
  BOOST_TEST_MESSAGE("cgroup: usage " << stats->usage / mib << " MiB of " << stats->limit / mib << ", peak "
                                      << stats->peak / mib << ", anon " << stats->anon / mib << ", file "
                                      << stats->file / mib << " (dirty " << stats->file_dirty / mib << ", writeback "
                                      << stats->file_writeback / mib << "), OOM kills " << stats->oom_kills);
  report_rss(g, "in its cgroup");
  BOOST_TEST_REQUIRE(result.find("MEMLEND-GUEST ok ") != std::string::npos, tail(g.console()));
  BOOST_TEST(field(result, "mib_plugged") == 640u);
  BOOST_TEST(field(result, "bytes") == 600 * mib);
  BOOST_TEST(stats->oom_kills == 0u);
  BOOST_TEST(stats->peak <= o.cgroup_limit);
  // What the guest wrote is not all in the host's memory: most went back to the file.
  BOOST_TEST(stats->file < 600 * mib / 2);
  BOOST_TEST(g.running());
}
