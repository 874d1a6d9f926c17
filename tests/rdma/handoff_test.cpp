// A VMM hands its guest memory to memlend (SCM_RIGHTS): memlend serves that
// other process's faults from a donor, through its buffer, with a mirror.
#define BOOST_TEST_MODULE rdma_handoff
#include <boost/test/unit_test.hpp>

#include "tests/support/child.hpp"
#include "tests/rdma/fixture.hpp"

#include <sys/socket.h>
#include <thread>
#include <unistd.h>

using namespace memlend;
using namespace memlend::rdma;
using std::chrono::seconds;

BOOST_AUTO_TEST_CASE(region_handed_over_by_another_process) {
  int sv[2];
  BOOST_TEST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  const std::uint64_t bytes = 8 << 20;
  test::Child::Options keep_socket;
  keep_socket.keep_fd = sv[1];
  test::Child vmm({MEMLEND_VMM_STUB, std::to_string(sv[1]), std::to_string(bytes), "3"}, keep_socket);
  ::close(sv[1]);
  UniqueFd go(::dup(sv[0]));
  auto handed = receive_region(UniqueFd(sv[0]), Millis(20000));
  BOOST_TEST_REQUIRE(bool(handed), (handed ? "" : handed.error().message));
  BOOST_TEST(handed->region.bytes == bytes);

  test::LocalDonor donor(16 << 20);
  test::TempDir dir("handoff");
  auto mirror = MirrorFile::open(dir.path(), "guest", bytes, {FsyncPolicy::never, {}});
  BOOST_TEST_REQUIRE(bool(mirror));
  std::atomic<bool> gone{false};
  RegionConfig cfg;
  cfg.bytes = bytes;
  cfg.block_bytes = 256 << 10;
  cfg.buffer_bytes = 1 << 20;
  cfg.mirror = *mirror;
  cfg.on_event = [&](const RegionEvent& e) {
    if (e.kind == RegionEvent::Kind::recipient_gone) gone = true;
  };
  auto region = RemoteRegion::adopt(cfg, std::move(*handed), donor.link(donor.lease(bytes)));
  BOOST_TEST_REQUIRE(bool(region), (region ? "" : region.error().message));
  BOOST_TEST((*region)->data() == nullptr);  // the memory is the other process's
  BOOST_TEST_REQUIRE(::write(go.get(), "g", 1) == 1);

  BOOST_TEST(vmm.wait(seconds(120)) == 0, vmm.out() << vmm.err());
  BOOST_TEST(vmm.out().find("verified 25165824 bytes, 0 mismatches") != std::string::npos, vmm.out());
  auto st = (*region)->stats();
  BOOST_TEST(st.faults > 0u);
  BOOST_TEST(st.evictions > 0u);
  BOOST_TEST(st.bytes_written > 0u);
  BOOST_TEST(st.mirror_bytes_written > 0u);
  // The VM is gone: the region notices by itself.
  for (int i = 0; i < 1500 && !gone; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  BOOST_TEST(gone.load());
  BOOST_TEST(((*region)->state() == RegionState::detached));
}

BOOST_AUTO_TEST_CASE(a_handoff_that_is_not_one_is_refused) {
  int sv[2];
  BOOST_TEST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  UniqueFd mine(sv[0]), theirs(sv[1]);
  BOOST_TEST_REQUIRE(::write(theirs.get(), "not a region description, just text", 32) == 32);
  auto h = receive_region(std::move(mine), Millis(5000));
  BOOST_TEST(!h);
  // And nothing at all within the timeout is an error, not a hang.
  int sv2[2];
  BOOST_TEST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv2) == 0);
  UniqueFd quiet(sv2[1]);
  auto none = receive_region(UniqueFd(sv2[0]), Millis(50));
  BOOST_TEST(!none);
}
