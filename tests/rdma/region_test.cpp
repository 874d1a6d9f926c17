// The remote region in one process against in-process donors: integrity
// through eviction at several block sizes, dirty tracking, flush and the
// mirror, failover and re-homing.
#define BOOST_TEST_MODULE rdma_region
#include <boost/test/unit_test.hpp>

#include "tests/rdma/fixture.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <numeric>
#include <random>
#include <sys/stat.h>
#include <thread>
#include <vector>

using namespace memlend;
using namespace memlend::rdma;

namespace {

std::unique_ptr<RemoteRegion> make_region(test::LocalDonor& donor, RegionConfig cfg) {
  auto lease = donor.lease(cfg.bytes);
  auto region = RemoteRegion::create(cfg, donor.link(lease));
  BOOST_TEST_REQUIRE(bool(region), (region ? "" : region.error().message));
  return std::move(*region);
}

// Writes pattern `pass` a page at a time in a shuffled order.
void fill_random(std::uint8_t* p, std::uint64_t bytes, std::uint64_t pass, unsigned seed) {
  std::vector<std::uint64_t> pages((bytes + 4095) / 4096);
  std::iota(pages.begin(), pages.end(), 0);
  std::shuffle(pages.begin(), pages.end(), std::mt19937(seed));
  for (auto pg : pages) test::fill(p, std::min(bytes, (pg + 1) * 4096), pass, pg * 4096);
}

struct Events {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<RegionEvent::Kind> seen;
  std::function<void(const RegionEvent&)> hook() {
    return [this](const RegionEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      seen.push_back(e.kind);
      cv.notify_all();
    };
  }
  bool saw(RegionEvent::Kind k) {
    std::lock_guard<std::mutex> lock(mu);
    return std::find(seen.begin(), seen.end(), k) != seen.end();
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(pattern_survives_eviction_at_every_block_size) {
  test::LocalDonor donor(64 << 20);
  for (std::uint64_t block : {4096ull, 65536ull, 1ull << 20, 2ull << 20}) {
    RegionConfig cfg;
    cfg.bytes = 8 << 20;
    cfg.block_bytes = block;
    cfg.buffer_bytes = std::max<std::uint64_t>(2 * block, 1 << 20);
    auto region = make_region(donor, cfg);
    auto* p = static_cast<std::uint8_t*>(region->data());
    test::fill(p, cfg.bytes, 1);
    BOOST_TEST(test::check(p, cfg.bytes, 1) == 0u);
    fill_random(p, cfg.bytes, 2, 7);
    BOOST_TEST(test::check(p, cfg.bytes, 2) == 0u);
    auto st = region->stats();
    BOOST_TEST_MESSAGE("block " << block << ": faults " << st.faults << " evictions " << st.evictions);
    BOOST_TEST(st.evictions > 0u);
    BOOST_TEST(st.resident_bytes <= st.buffer_bytes);
    BOOST_TEST(st.bytes_read > 0u);
    BOOST_TEST_REQUIRE(bool(region->detach()));
  }
}

// Each backing, asked for by name, through eviction, write-backs that skip
// clean blocks, and a flush to the mirror.
BOOST_AUTO_TEST_CASE(both_backings_keep_every_byte) {
  test::LocalDonor donor(64 << 20);
  test::TempDir dir("backings");
  for (RegionBacking backing : {RegionBacking::anonymous, RegionBacking::memfd}) {
    BOOST_TEST_MESSAGE("backing " << region_backing_name(backing));
    auto mirror = MirrorFile::open(dir.path(), std::string("vm-") + region_backing_name(backing), 8 << 20,
                                   {FsyncPolicy::never, {}});
    BOOST_TEST_REQUIRE(bool(mirror));
    RegionConfig cfg;
    cfg.bytes = (8 << 20) + 5000;  // the last block is short
    cfg.block_bytes = 64 << 10;
    cfg.buffer_bytes = 1 << 20;
    cfg.mirror = *mirror;
    cfg.backing = backing;
    auto region = make_region(donor, cfg);
    auto st = region->stats();
    BOOST_TEST((st.backing == backing));
    BOOST_TEST(st.buffer_bytes <= cfg.buffer_bytes);
    auto* p = static_cast<std::uint8_t*>(region->data());
    const std::uint64_t half = 4 << 20;
    test::fill(p, cfg.bytes, 21);
    fill_random(p, half, 22, 5);
    BOOST_TEST(test::check(p, half, 22) == 0u);
    BOOST_TEST(test::check(p, cfg.bytes, 21, half) == 0u);
    BOOST_TEST_REQUIRE(bool(region->evict_all()));
    BOOST_TEST(region->stats().resident_bytes == 0u);
    // Reading it all back dirties nothing: no block is written back again.
    auto written = region->stats().bytes_written;
    BOOST_TEST(test::check(p, half, 22) == 0u);
    BOOST_TEST(test::check(p, cfg.bytes, 21, half) == 0u);
    BOOST_TEST_REQUIRE(bool(region->evict_all()));
    if (region->stats().dirty_tracking) BOOST_TEST(region->stats().bytes_written == written);
    std::vector<std::uint8_t> copy(cfg.bytes);
    BOOST_TEST_REQUIRE(bool((*mirror)->read(0, copy.data(), copy.size())));
    BOOST_TEST(test::check(copy.data(), half, 22) == 0u);
    BOOST_TEST(test::check(copy.data(), cfg.bytes, 21, half) == 0u);
    st = region->stats();
    BOOST_TEST(st.evictions > 0u);
    BOOST_TEST(st.prefetches > 0u);
    BOOST_TEST(st.resident_bytes <= st.buffer_bytes);
    BOOST_TEST_REQUIRE(bool(region->detach()));
  }
}

// Writers on several threads while blocks are installed, write-protected,
// written back and evicted under them: a write that slipped past the
// write-protection would be lost at eviction.
BOOST_AUTO_TEST_CASE(concurrent_writers_lose_nothing) {
  test::LocalDonor donor(32 << 20);
  for (RegionBacking backing : {RegionBacking::anonymous, RegionBacking::memfd}) {
    BOOST_TEST_MESSAGE("backing " << region_backing_name(backing));
    RegionConfig cfg;
    cfg.bytes = 8 << 20;
    cfg.block_bytes = 64 << 10;
    cfg.buffer_bytes = 512 << 10;
    cfg.backing = backing;
    auto region = make_region(donor, cfg);
    auto* p = static_cast<std::uint8_t*>(region->data());
    constexpr unsigned writers = 3;
    for (std::uint64_t pass = 31; pass < 34; ++pass) {
      // Each thread its own pages, interleaved, so that every block has
      // several writers.
      std::vector<std::thread> threads;
      for (unsigned t = 0; t < writers; ++t)
        threads.emplace_back([&, t] {
          for (std::uint64_t off = t * 4096; off < cfg.bytes; off += writers * 4096)
            test::fill(p, off + 4096, pass, off);
        });
      for (auto& t : threads) t.join();
      BOOST_TEST_REQUIRE(bool(region->evict_all()));
      BOOST_TEST(test::check(p, cfg.bytes, pass) == 0u);
    }
    BOOST_TEST((region->stats().backing == backing));
  }
}

BOOST_AUTO_TEST_CASE(odd_sizes_keep_every_byte) {
  test::LocalDonor donor(16 << 20);
  RegionConfig cfg;
  cfg.bytes = (5 << 20) + 1234;  // not a multiple of the page or the block
  cfg.block_bytes = 60000;       // rounded up to the page size
  cfg.buffer_bytes = 200000;
  auto region = make_region(donor, cfg);
  auto* p = static_cast<std::uint8_t*>(region->data());
  fill_random(p, cfg.bytes, 3, 11);
  p[cfg.bytes - 1] = 0x5A;
  BOOST_TEST_REQUIRE(bool(region->evict_all()));
  BOOST_TEST(region->stats().resident_bytes == 0u);
  BOOST_TEST(test::check(p, cfg.bytes - 8, 3) == 0u);
  BOOST_TEST(p[cfg.bytes - 1] == 0x5A);
  BOOST_TEST(region->stats().block_bytes % 4096 == 0u);
}

BOOST_AUTO_TEST_CASE(fresh_region_reads_zeros) {
  test::LocalDonor donor(8 << 20);
  RegionConfig cfg;
  cfg.bytes = 4 << 20;
  cfg.block_bytes = 256 << 10;
  cfg.buffer_bytes = 512 << 10;
  auto region = make_region(donor, cfg);
  auto* p = static_cast<const std::uint8_t*>(region->data());
  BOOST_TEST(std::all_of(p, p + cfg.bytes, [](std::uint8_t b) { return b == 0; }));
}

BOOST_AUTO_TEST_CASE(clean_blocks_are_dropped_without_a_write_back) {
  test::LocalDonor donor(16 << 20);
  RegionConfig cfg;
  cfg.bytes = 4 << 20;
  cfg.block_bytes = 256 << 10;
  cfg.buffer_bytes = 512 << 10;
  auto region = make_region(donor, cfg);
  auto* p = static_cast<std::uint8_t*>(region->data());
  test::fill(p, cfg.bytes, 4);
  BOOST_TEST_REQUIRE(bool(region->evict_all()));
  if (!region->stats().dirty_tracking) {
    BOOST_TEST_MESSAGE("kernel maps no block write-protected (Linux < 6.5): every block counts as dirty");
    return;
  }
  auto written = region->stats().bytes_written;
  BOOST_TEST(written == cfg.bytes);  // each block once: its only write-back
  for (int round = 0; round < 2; ++round) BOOST_TEST(test::check(p, cfg.bytes, 4) == 0u);
  auto st = region->stats();
  BOOST_TEST(st.bytes_written == written);
  BOOST_TEST(st.clean_evictions > 0u);
}

BOOST_AUTO_TEST_CASE(flush_writes_dirty_blocks_to_donor_and_mirror) {
  test::LocalDonor donor(16 << 20);
  test::TempDir dir("flush");
  auto mirror = MirrorFile::open(dir.path(), "vm7", 8 << 20, {FsyncPolicy::always, {}});
  BOOST_TEST_REQUIRE(bool(mirror));
  struct stat st {};
  BOOST_TEST_REQUIRE(::stat((*mirror)->path().c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0600u);
  RegionConfig cfg;
  cfg.bytes = 2 << 20;
  cfg.block_bytes = 256 << 10;
  cfg.buffer_bytes = 4 << 20;  // everything fits: nothing is evicted
  cfg.mirror = *mirror;
  cfg.mirror_offset = 4 << 20;  // this lease's slice of the VM's mirror
  auto region = make_region(donor, cfg);
  auto* p = static_cast<std::uint8_t*>(region->data());
  test::fill(p, cfg.bytes, 5);
  BOOST_TEST(region->stats().evictions == 0u);
  BOOST_TEST_REQUIRE(bool(region->flush()));
  std::vector<std::uint8_t> copy(cfg.bytes);
  BOOST_TEST_REQUIRE(bool((*mirror)->read(cfg.mirror_offset, copy.data(), copy.size())));
  BOOST_TEST(test::check(copy.data(), cfg.bytes, 5) == 0u);
  BOOST_TEST((*mirror)->syncs() > 0u);
  // Still resident, now clean: a second flush writes nothing.
  auto written = region->stats().bytes_written;
  BOOST_TEST_REQUIRE(bool(region->flush()));
  if (region->stats().dirty_tracking) BOOST_TEST(region->stats().bytes_written == written);
  BOOST_TEST(test::check(p, cfg.bytes, 5) == 0u);
}

BOOST_AUTO_TEST_CASE(clean_interval_bounds_the_mirror_lag_in_time) {
  test::LocalDonor donor(8 << 20);
  test::TempDir dir("lag");
  auto mirror = MirrorFile::open(dir.path(), "vm8", 1 << 20, {FsyncPolicy::never, {}});
  BOOST_TEST_REQUIRE(bool(mirror));
  RegionConfig cfg;
  cfg.bytes = 1 << 20;
  cfg.block_bytes = 256 << 10;
  cfg.buffer_bytes = 1 << 20;
  cfg.mirror = *mirror;
  cfg.clean_interval = Millis(20);
  auto region = make_region(donor, cfg);
  test::fill(region->data(), cfg.bytes, 6);
  // Nothing is evicted, yet the mirror catches up by itself (bounded wait).
  std::vector<std::uint8_t> copy(cfg.bytes);
  bool caught_up = false;
  for (int i = 0; i < 500 && !caught_up; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    BOOST_TEST_REQUIRE(bool((*mirror)->read(0, copy.data(), copy.size())));
    caught_up = test::check(copy.data(), cfg.bytes, 6) == 0;
  }
  BOOST_TEST(caught_up);
  BOOST_TEST(region->stats().evictions == 0u);
}

BOOST_AUTO_TEST_CASE(failover_then_rehome_keeps_every_byte) {
  auto first = std::make_unique<test::LocalDonor>(16 << 20);
  test::LocalDonor second(16 << 20);
  test::TempDir dir("rehome");
  auto mirror = MirrorFile::open(dir.path(), "vm9", 4 << 20, {FsyncPolicy::never, {}});
  BOOST_TEST_REQUIRE(bool(mirror));
  Events events;
  RegionConfig cfg;
  cfg.bytes = 4 << 20;
  cfg.block_bytes = 128 << 10;
  cfg.buffer_bytes = 512 << 10;
  cfg.mirror = *mirror;
  cfg.on_event = events.hook();
  auto region = make_region(*first, cfg);
  auto* p = static_cast<std::uint8_t*>(region->data());
  test::fill(p, cfg.bytes, 7);
  fill_random(p, cfg.bytes / 2, 8, 3);  // the first half again, some of it still dirty in the buffer
  // The control plane learns first that the donor is gone.
  region->fail_over("host failed its health check");
  first.reset();
  BOOST_TEST((region->state() == RegionState::degraded));
  BOOST_TEST(test::check(p, cfg.bytes / 2, 8) == 0u);
  BOOST_TEST(test::check(p, cfg.bytes, 7, cfg.bytes / 2) == 0u);
  auto st = region->stats();
  BOOST_TEST(st.failovers == 1u);
  BOOST_TEST(st.mirror_bytes_read > 0u);
  BOOST_TEST(events.saw(RegionEvent::Kind::donor_failed));
  BOOST_TEST(events.saw(RegionEvent::Kind::failover_to_mirror));

  auto lease = second.lease(cfg.bytes);
  BOOST_TEST_REQUIRE(bool(region->rehome(second.link(lease))));
  BOOST_TEST((region->state() == RegionState::remote));
  BOOST_TEST(events.saw(RegionEvent::Kind::rehomed));
  BOOST_TEST_REQUIRE(bool(region->evict_all()));
  auto before = region->stats();
  BOOST_TEST(test::check(p, cfg.bytes / 2, 8) == 0u);
  auto after = region->stats();
  BOOST_TEST(after.bytes_read > before.bytes_read);                // from the new donor
  BOOST_TEST(after.mirror_bytes_read == before.mirror_bytes_read);  // not the mirror
  BOOST_TEST(after.rehomes == 1u);
}

// Large aligned writes may go past the page cache (O_DIRECT) and the rest
// through it; reads see both, whichever came last.
BOOST_AUTO_TEST_CASE(mirror_keeps_direct_and_cached_writes) {
  constexpr std::uint64_t mib = 1 << 20;
  test::TempDir dir("direct");
  auto mirror = MirrorFile::open(dir.path(), "vm10", 4 * mib, {FsyncPolicy::never, {}});
  BOOST_TEST_REQUIRE(bool(mirror));
  // Page-aligned memory, so that the aligned writes really are.
  void* mem = nullptr;
  BOOST_TEST_REQUIRE(::posix_memalign(&mem, 4096, 4 * mib + 4096) == 0);
  std::unique_ptr<std::uint8_t, decltype(&std::free)> buf(static_cast<std::uint8_t*>(mem), &std::free);
  std::vector<std::uint8_t> want(4 * mib, 0);
  auto write = [&](std::uint64_t offset, std::size_t length, std::uint8_t value, std::size_t skew) {
    std::memset(buf.get() + skew, value, length);
    BOOST_TEST_REQUIRE(bool((*mirror)->write(offset, buf.get() + skew, length)));
    std::memset(want.data() + offset, value, length);
  };
  write(0, 2 * mib, 1, 0);               // aligned and large
  write(4096 + 10, 5000, 2, 0);          // unaligned, over it
  write(mib, mib, 3, 0);                 // aligned and large, over part of both
  write(mib - 100, 300, 4, 0);           // unaligned, across the two
  write(2 * mib, mib, 5, 512);           // aligned offset and length, unaligned memory
  write(2 * mib, mib, 6, 0);             // aligned and large, over a cached write
  write(4 * mib - 4096, 4096, 7, 0);     // the last page, small
  std::vector<std::uint8_t> got(4 * mib);
  BOOST_TEST_REQUIRE(bool((*mirror)->read(0, got.data(), got.size())));
  BOOST_TEST((got == want));
}

// A donor that fails while blocks are on their way to the mirror (queued
// for the mirror writer, or written back to the donor only) loses none of
// them: blocks the mirror gets through the page cache and blocks it gets
// with O_DIRECT; an odd-sized region whose last block is no whole page, in a
// slice of the mirror.
BOOST_AUTO_TEST_CASE(failover_right_after_writing_loses_nothing) {
  test::TempDir dir("queued");
  for (std::uint64_t block : {64ull << 10, 1ull << 20}) {
    BOOST_TEST_MESSAGE("block " << block);
    auto donor = std::make_unique<test::LocalDonor>(16 << 20);
    auto mirror = MirrorFile::open(dir.path(), "vm11-" + std::to_string(block), 16 << 20,
                                   {FsyncPolicy::interval, Millis(1)});
    BOOST_TEST_REQUIRE(bool(mirror));
    RegionConfig cfg;
    cfg.bytes = (9 << 20) + 1234;
    cfg.block_bytes = block;
    cfg.buffer_bytes = 4 * block;
    cfg.mirror = *mirror;
    cfg.mirror_offset = 6 << 20;
    auto region = make_region(*donor, cfg);
    auto* p = static_cast<std::uint8_t*>(region->data());
    fill_random(p, cfg.bytes, 12, 5);
    region->fail_over("donor lost mid-stream");
    donor.reset();
    BOOST_TEST((region->state() == RegionState::degraded));
    BOOST_TEST(test::check(p, cfg.bytes - 8, 12) == 0u);
    BOOST_TEST_REQUIRE(bool(region->evict_all()));
    BOOST_TEST(region->stats().resident_bytes == 0u);
    BOOST_TEST(test::check(p, cfg.bytes - 8, 12) == 0u);
    BOOST_TEST(region->stats().mirror_bytes_read > 0u);
  }
}
