#define BOOST_TEST_MODULE guest_lent
#include <boost/test/unit_test.hpp>

// A real guest's plugged memory on memory a donor lends: `memlend donor` and
// `memlend mount` as an operator runs them, QEMU mapping the mount's file as
// its virtio-mem memdev, in a memory cgroup smaller than what the guest
// writes, so that pages really go to the donor and come back. Then the donor
// is killed mid-workload (the mirror serves), and memory the guest unplugs
// goes back to the donor's pool.

#include "tests/guest/guest_common.hpp"

#include <thread>

using namespace memlend;
using namespace memlend::test;

namespace {

void require_ok(QemuGuest& g, const std::string& result) {
  BOOST_TEST_MESSAGE("guest: " << result);
  BOOST_TEST_REQUIRE(result.find("MEMLEND-GUEST ok ") != std::string::npos, tail(g.console()));
}

nlohmann::json mount_counters(LentMemory& lent) {
  auto j = lent.counters();
  BOOST_TEST_MESSAGE("memlend mount: " << j.dump());
  return j;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_guest_writes_more_than_its_cgroup_holds_onto_lent_memory_and_gives_it_back,
                     *boost::unit_test::precondition(can_lend)) {
  LentMemory lent(768 * mib);
  auto started = std::chrono::steady_clock::now();
  auto guest = boot_and_plug(lent.file(), 768 * mib, 640 * mib, "memlend.fill_mib=600 memlend.unplug=1", 384 * mib);
  QemuGuest& g = *guest;
  require_ok(g, g.wait_line("MEMLEND-GUEST ", 600s));
  BOOST_TEST(field(g.console(), "mib_plugged") == 640u);
  auto cg = g.memory_cgroup()->stats();
  BOOST_TEST_REQUIRE(static_cast<bool>(cg));
  BOOST_TEST(cg->oom_kills == 0u);
  // The guest's 600 MiB did not fit in the host's memory: they are at the donor.
  auto held = lent.donor.stats();
  BOOST_TEST_MESSAGE("donor holds " << held.resident_bytes / mib << " MiB; cgroup file pages " << cg->file / mib
                                    << " MiB; " << seconds_since(started) << " s");
  BOOST_TEST(held.resident_bytes >= 400 * mib);
  BOOST_TEST(cg->file < 300 * mib);

  // Unplugged, QEMU punches the memory out of the file, and memlend out of the donor's pool.
  auto unplugged = g.qmp().set_requested_size(g.options().device_id, 0, 180s);
  BOOST_TEST_REQUIRE(static_cast<bool>(unplugged), (unplugged ? "" : unplugged.error().message) << tail(g.console()));
  BOOST_TEST(g.wait_line("MEMLEND-GUEST-UNPLUG", 60s).find("ok") != std::string::npos, tail(g.console()));
  auto back = lent.donor.stats();
  BOOST_TEST_MESSAGE("after the unplug the donor holds " << back.resident_bytes / mib << " MiB, "
                                                         << back.discarded_bytes / mib << " MiB given back");
  BOOST_TEST(back.resident_bytes <= held.resident_bytes / 4);
  BOOST_TEST(back.discarded_bytes >= 400 * mib);
  require_quit(g);

  auto j = mount_counters(lent);
  // Pages went out and came back in: written back under the cgroup's limit,
  // fetched again by the guest's check.
  BOOST_TEST(j["bytes_written_back"].get<std::uint64_t>() >= 400 * mib);
  BOOST_TEST(j["bytes_fetched"].get<std::uint64_t>() >= 100 * mib);
  BOOST_TEST(j["bytes_punched"].get<std::uint64_t>() >= 400 * mib);
  BOOST_TEST(j["errors"].get<std::uint64_t>() == 0u);
  BOOST_TEST(j["failovers"].get<std::uint64_t>() == 0u);
}

BOOST_AUTO_TEST_CASE(the_donor_killed_while_the_guest_works_costs_nothing_with_a_mirror,
                     *boost::unit_test::precondition(can_lend)) {
  LentMemory lent(768 * mib);
  auto guest = boot_and_plug(lent.file(), 768 * mib, 640 * mib, "memlend.fill_mib=600", 384 * mib);
  QemuGuest& g = *guest;
  // Once the donor holds a good part of what the guest writes, it dies.
  auto deadline = std::chrono::steady_clock::now() + 300s;
  while (lent.donor.stats().resident_bytes < 200 * mib && std::chrono::steady_clock::now() < deadline &&
         g.console().find("MEMLEND-GUEST ") == std::string::npos)
    std::this_thread::sleep_for(100ms);
  BOOST_TEST_REQUIRE(g.console().find("MEMLEND-GUEST ") == std::string::npos,
                     "the guest finished before the donor held 200 MiB: " << tail(g.console()));
  lent.donor.child->kill9();
  require_ok(g, g.wait_line("MEMLEND-GUEST ", 600s));
  require_quit(g);
  auto j = mount_counters(lent);
  BOOST_TEST(j["failovers"].get<std::uint64_t>() == 1u);
  BOOST_TEST(j["mirror_bytes_read"].get<std::uint64_t>() > 0u);
  BOOST_TEST(j["errors"].get<std::uint64_t>() == 0u);
}
