// What the guest tests share: the guest image, when a guest can boot here,
// booting one and plugging its memory, and reading its result line.
#pragma once

#include "tests/support/qemu_guest.hpp"

#include <boost/test/unit_test.hpp>

#include <unistd.h>

#include <chrono>
#include <memory>
#include <regex>
#include <string>

namespace memlend::test {

using namespace std::chrono_literals;


inline constexpr std::uint64_t mib = 1 << 20;

inline const GuestImage& image() {
  static const GuestImage g = guest_image(MEMLEND_GUEST_DIR);
  return g;
}

inline boost::test_tools::assertion_result can_boot(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result ok(true);
  if (::geteuid() != 0) {
    ok = false;
    ok.message() << "booting a guest with its memory in a cgroup needs root";
  } else if (qemu_binary().empty()) {
    ok = false;
    ok.message() << "no qemu-system-x86_64 (the qemu-system-x86 package)";
  } else if (!image().unavailable.empty()) {
    ok = false;
    ok.message() << "no guest to boot: " << image().unavailable;
  }
  return ok;
}

inline boost::test_tools::assertion_result can_boot_in_a_cgroup(boost::unit_test::test_unit_id id) {
  auto ok = can_boot(id);
  if (!ok) return ok;
  auto probe = cgroup::MemoryCgroup::create("memlend-probe-" + std::to_string(::getpid()), 64 * mib);
  if (!probe) {
    ok = false;
    ok.message() << "no memory cgroup to be had: " << probe.error().message;
  }
  return ok;
}

// And with a FUSE mount for its memory file.
inline boost::test_tools::assertion_result can_boot_on_fuse(boost::unit_test::test_unit_id id) {
  auto ok = can_boot_in_a_cgroup(id);
  if (ok && ::access("/dev/fuse", R_OK | W_OK) != 0) {
    ok = false;
    ok.message() << "no /dev/fuse";
  }
  return ok;
}

inline std::uint64_t field(const std::string& line, const std::string& key) {
  std::smatch m;
  std::regex re("\\b" + key + "=([0-9]+)");
  return std::regex_search(line, m, re) ? std::stoull(m[1]) : ~0ull;
}

inline std::string tail(const std::string& text, std::size_t n = 3000) {
  return text.size() <= n ? text : text.substr(text.size() - n);
}

inline double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

inline void report_rss(QemuGuest& g, const char* when) {
  auto r = g.rss();
  BOOST_TEST_MESSAGE("QEMU's memory " << when << ": anon " << r.anon_kib / 1024 << " MiB, file "
                                      << r.file_kib / 1024 << " MiB, shmem " << r.shmem_kib / 1024
                                      << " MiB, peak RSS " << r.peak_kib / 1024 << " MiB");
}

// Boots the guest on `file` and plugs `plug` through QMP, asked at once:
// QEMU holds the request until the guest's driver comes up. The guest stays
// up after its last line until the test ends it.
inline std::unique_ptr<QemuGuest> boot_and_plug(const std::string& memory_file, std::uint64_t memdev, std::uint64_t plug,
                                         const std::string& kernel_args, std::uint64_t cgroup_limit = 0) {
  QemuGuestOptions o;
  o.memory_file = memory_file;
  o.memdev_bytes = memdev;
  o.base_bytes = 256 * mib;
  o.cgroup_limit = cgroup_limit;
  o.kernel_args = "memlend.plug_mib=" + std::to_string(plug / mib) + " memlend.passes=2 memlend.wait_s=120 " +
                  "memlend.linger_s=300 " + kernel_args;
  auto started = std::chrono::steady_clock::now();
  auto guest = QemuGuest::start(image(), qemu_binary(), o);
  BOOST_TEST_REQUIRE(static_cast<bool>(guest), (guest ? "" : guest.error().message));
  auto& g = **guest;
  auto plugged = g.qmp().set_requested_size(o.device_id, plug, 180s);
  BOOST_TEST_REQUIRE(static_cast<bool>(plugged), (plugged ? "" : plugged.error().message) << "\n" << tail(g.console()));
  BOOST_TEST_MESSAGE(plug / mib << " MiB plugged " << seconds_since(started) << " s after QEMU started");
  return std::move(*guest);
}

}  // namespace memlend::test
