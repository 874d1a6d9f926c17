// The data plane with its guest workload on a datastore that fills up: the
// mirror's failure is told at once, a donor's death then loses memory that
// the guest meets as memory errors (SIGBUS), and the process lives on.
#define BOOST_TEST_MODULE data_plane
#include <boost/test/unit_test.hpp>

#include "dataplane/data_plane.hpp"
#include "demo/guest_workload.hpp"
#include "tests/persistence/support.hpp"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

using namespace memlend;

namespace {

boost::test_tools::assertion_result may_mount(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r(test::can_mount());
  r.message() << "needs to mount a tmpfs (root or CAP_SYS_ADMIN)";
  return r;
}

struct Heard {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<rdma::RegionEvent> events;
  void operator()(const std::string&, std::uint64_t, const rdma::RegionEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(e);
    cv.notify_all();
  }
  // The detail of the first event of kind k, waiting for it at most `limit`.
  std::optional<std::string> wait_for(rdma::RegionEvent::Kind k, std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lock(mu);
    std::optional<std::string> found;
    cv.wait_for(lock, limit, [&] {
      for (const auto& e : events)
        if (e.kind == k) found = e.detail;
      return found.has_value();
    });
    return found;
  }
};

// Polls `done` until it holds or `limit` passes.
bool eventually(const std::function<bool()>& done, std::chrono::seconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_full_datastore_is_told_and_a_lost_donor_kills_nothing, *boost::unit_test::precondition(may_mount)) {
  test::Tmpfs datastore("datastore", 512);
  BOOST_TEST_REQUIRE(datastore.mounted());
  DataPlaneOptions o;
  o.bytes_per_mib = 1024;  // 4 GiB lent: a 4 MiB region, its mirror 8 times the datastore
  o.block_bytes = 64 << 10;
  o.buffer_bytes = 256 << 10;
  o.datastore = datastore.path();
  auto heard = std::make_shared<Heard>();
  {
    DataPlane plane(o);
    demo::GuestWorkload guest(plane);  // stopped before the plane goes
    plane.set_region_listener([heard](const std::string& vm, std::uint64_t lease, const rdma::RegionEvent& e) {
      (*heard)(vm, lease, e);
    });
    auto addr = plane.serve("B", 8192, "127.0.0.1:0");
    BOOST_TEST_REQUIRE(bool(addr), (addr ? "" : addr.error().message));
    auto lease = plane.grant("B", *addr, 4096);
    BOOST_TEST_REQUIRE(bool(lease), (lease ? "" : lease.error().message));
    BOOST_TEST_REQUIRE(bool(plane.attach("VM4", 1, 4096, *lease)));

    // The guest writes its 4 MiB; the buffer sends them on, and the mirror's
    // writes fail once the datastore is full. The donor still has them.
    auto failed = heard->wait_for(rdma::RegionEvent::Kind::mirror_failed, std::chrono::seconds(60));
    BOOST_TEST_REQUIRE(failed.has_value());
    BOOST_TEST(failed->find("No space left on device") != std::string::npos, *failed);
    BOOST_TEST(plane.region_stats("VM4", 1).mirror_failed);
    BOOST_TEST(eventually([&] { return guest.stats("VM4").passes > 0; }, std::chrono::seconds(60)));
    BOOST_TEST(guest.stats("VM4").mismatches == 0u);

    // The donor dies: no failover to a mirror that is not there.
    plane.stop_serving("B");
    plane.fail_over("VM4", 1, "B is down");
    auto lost = heard->wait_for(rdma::RegionEvent::Kind::region_failed, std::chrono::seconds(10));
    BOOST_TEST_REQUIRE(lost.has_value());
    BOOST_TEST(lost->find("the mirror could not be written") != std::string::npos, *lost);
    BOOST_TEST(!heard->wait_for(rdma::RegionEvent::Kind::failover_to_mirror, std::chrono::seconds(0)));
    // The guest touches memory nobody holds: a memory error, noted, and the
    // process goes on.
    BOOST_TEST(eventually([&] { return guest.stats("VM4").lost_bytes > 0; }, std::chrono::seconds(60)));
    BOOST_TEST(guest.stats("VM4").mismatches == 0u);
  }
}
