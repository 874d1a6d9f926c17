#define BOOST_TEST_MODULE rdma_region
#include <boost/test/unit_test.hpp>

#include "tests/rdma/fixture.hpp"

using namespace memlend;
using namespace memlend::rdma;

BOOST_AUTO_TEST_CASE(pattern_survives_eviction) {
  test::LocalDonor donor(64 << 20);
  test::TempDir dir("region");
  const std::uint64_t bytes = 8 << 20;
  auto lease = donor.lease(bytes);
  auto mirror = MirrorFile::open(dir.path(), "vm1", bytes, {FsyncPolicy::never});
  BOOST_TEST_REQUIRE(bool(mirror));
  RegionConfig cfg;
  cfg.bytes = bytes;
  cfg.block_bytes = 256 << 10;
  cfg.buffer_bytes = 1 << 20;
  cfg.mirror = *mirror;
  auto region = RemoteRegion::create(cfg, donor.link(lease));
  BOOST_TEST_REQUIRE(bool(region), (region ? "" : region.error().message));
  auto* p = (*region)->data();
  test::fill(p, bytes, 1);
  BOOST_TEST(test::check(p, bytes, 1) == 0u);
  auto st = (*region)->stats();
  BOOST_TEST_MESSAGE("faults " << st.faults << " evictions " << st.evictions << " written " << st.bytes_written
                               << " read " << st.bytes_read << " resident " << st.resident_bytes);
  BOOST_TEST(st.evictions > 0u);
  BOOST_TEST(st.resident_bytes <= cfg.buffer_bytes);
}
