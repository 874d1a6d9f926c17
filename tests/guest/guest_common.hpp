// What the guest tests share: guest_support.hpp, in Boost.Test's terms
// (preconditions that say why a case is skipped, failures that stop a case).
#pragma once

#include "tests/guest/guest_support.hpp"

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <memory>
#include <string>

namespace memlend::test {

using namespace std::chrono_literals;

inline boost::test_tools::assertion_result unless(const std::string& why) {
  boost::test_tools::assertion_result ok(why.empty());
  if (!why.empty()) ok.message() << why;
  return ok;
}

inline boost::test_tools::assertion_result can_boot(boost::unit_test::test_unit_id) { return unless(why_no_guest()); }

inline boost::test_tools::assertion_result can_boot_in_a_cgroup(boost::unit_test::test_unit_id) {
  return unless(why_no_guest_in_a_cgroup());
}

inline boost::test_tools::assertion_result can_lend(boost::unit_test::test_unit_id) {
  auto why = why_no_guest_in_a_cgroup();
  return unless(why.empty() ? why_no_fuse() : why);
}

inline void report_rss(QemuGuest& g, const char* when) {
  auto r = g.rss();
  BOOST_TEST_MESSAGE("QEMU's memory " << when << ": anon " << r.anon_kib / 1024 << " MiB, file "
                                      << r.file_kib / 1024 << " MiB, shmem " << r.shmem_kib / 1024
                                      << " MiB, peak RSS " << r.peak_kib / 1024 << " MiB");
}

// guest_support's boot_and_plug, which the case cannot go on without.
inline std::unique_ptr<QemuGuest> boot_and_plug(const std::string& memory_file, std::uint64_t memdev, std::uint64_t plug,
                                                const std::string& kernel_args, std::uint64_t cgroup_limit = 0) {
  auto started = std::chrono::steady_clock::now();
  auto guest = boot_and_plug(PlugOptions{memory_file, memdev, plug, kernel_args, cgroup_limit});
  BOOST_TEST_REQUIRE(static_cast<bool>(guest), (guest ? "" : guest.error().message));
  BOOST_TEST_MESSAGE(plug / mib << " MiB plugged " << seconds_since(started) << " s after QEMU started");
  return std::move(*guest);
}

inline void require_quit(QemuGuest& g) {
  auto status = quit(g);
  BOOST_TEST_REQUIRE(static_cast<bool>(status), (status ? "" : status.error().message));
  BOOST_TEST(*status == 0);
}

}  // namespace memlend::test
