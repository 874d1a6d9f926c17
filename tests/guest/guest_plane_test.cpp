#define BOOST_TEST_MODULE guest_plane
#include <boost/test/unit_test.hpp>

// The product's own path to a real guest: the data plane serves a VM's memory
// file (dataplane/guest_memory.hpp), QEMU maps it, and attaching leases plugs
// their memory through QMP while detaching them unplugs it first — what the
// agent and the single-process run do when their planner lends and reclaims.

#include "dataplane/data_plane.hpp"
#include "tests/guest/guest_common.hpp"

#include <sys/stat.h>

using namespace memlend;
using namespace memlend::test;

BOOST_AUTO_TEST_CASE(leases_attached_are_plugged_into_the_guest_and_detached_ones_unplugged_first,
                     *boost::unit_test::precondition(can_lend)) {
  std::string dir = make_temp_dir("guest-plane");
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};
  ::mkdir((dir + "/datastore").c_str(), 0700);
  DataPlaneOptions d;
  d.bytes_per_mib = mib;  // a real guest's memory is lent unscaled
  d.datastore = dir + "/datastore";
  auto plane = std::make_shared<DataPlane>(d);
  auto addr = plane->serve("donor", 1024, "127.0.0.1:0");
  BOOST_TEST_REQUIRE(static_cast<bool>(addr), (addr ? "" : addr.error().message));
  GuestMemoryOptions g;
  g.dir = dir + "/mem";
  g.vms["g1"] = QemuGuestConfig{dir + "/g1.qmp", 768 * mib, ""};
  auto served = plane->serve_guests(g);
  BOOST_TEST_REQUIRE(static_cast<bool>(served), (served ? "" : served.error().message));
  std::string file = g.dir + "/g1";

  QemuGuestOptions o;
  o.memory_file = file;
  o.memdev_bytes = 768 * mib;
  o.base_bytes = 256 * mib;
  o.cgroup_limit = 384 * mib;
  o.extra_qmp = {dir + "/g1.qmp"};
  o.kernel_args = "memlend.plug_mib=512 memlend.passes=2 memlend.wait_s=300 memlend.fill_mib=480 "
                  "memlend.unplug=1 memlend.linger_s=300";
  auto guest = QemuGuest::start(image(), qemu_binary(), o);
  BOOST_TEST_REQUIRE(static_cast<bool>(guest), (guest ? "" : guest.error().message));
  QemuGuest& q = **guest;

  // Two leases of 256 MiB: each attach plugs what is lent so far.
  std::vector<LeaseAccess> leases;
  for (std::uint64_t id : {1, 2}) {
    auto a = plane->grant("donor", *addr, 256);
    BOOST_TEST_REQUIRE(static_cast<bool>(a), (a ? "" : a.error().message));
    auto s = plane->attach("g1", id, 256, *a);
    BOOST_TEST_REQUIRE(static_cast<bool>(s), (s ? "" : s.error().message) << tail(q.console()));
    BOOST_TEST(plane->guests()->requested("g1") == id * 256 * mib);
    leases.push_back(*a);
  }
  auto size = q.qmp().memory_device_size(o.device_id);
  BOOST_TEST_REQUIRE(static_cast<bool>(size));
  BOOST_TEST(*size == 512 * mib);
  std::string result = q.wait_line("MEMLEND-GUEST ", 600s);
  BOOST_TEST_MESSAGE("guest: " << result);
  BOOST_TEST_REQUIRE(result.find("MEMLEND-GUEST ok ") != std::string::npos, tail(q.console()));
  BOOST_TEST(field(result, "mib_plugged") == 512u);
  auto written = plane->guests()->stats("g1");
  BOOST_TEST(written.bytes_written_back >= 200 * mib);

  // Reclaimed one after the other: unplugged first, then given back.
  for (std::uint64_t id : {2, 1}) {
    plane->detach("g1", id);
    plane->release("donor", leases[id - 1]);
    BOOST_TEST(!plane->has_region("g1", id));
  }
  BOOST_TEST(plane->guests()->requested("g1") == 0u);
  BOOST_TEST(q.wait_line("MEMLEND-GUEST-UNPLUG", 120s).find("ok") != std::string::npos, tail(q.console()));
  auto punched = plane->guests()->stats("g1");
  BOOST_TEST_MESSAGE("punched " << punched.bytes_punched / mib << " MiB; blocks still placed "
                                << punched.blocks_placed);
  BOOST_TEST(punched.bytes_punched >= 400 * mib);
  BOOST_TEST(punched.blocks_placed == 0u);
  BOOST_TEST(plane->pool_leases("donor").empty());
  auto quit = q.qmp().execute("quit");
  BOOST_TEST((quit || quit.error().code == ErrorCode::unavailable));
  BOOST_TEST(q.wait_exit(30s) == 0);
  guest->reset();
  plane->shutdown();
}
