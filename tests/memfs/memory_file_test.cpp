// The memory file's engine against in-process donors on loopback: placement
// as blocks are first written, zeros where nothing was, punches that give
// memory back to the donor, a full file, the mirror after a donor's death,
// re-homing, and moving blocks off a lease that is taken back.
#define BOOST_TEST_MODULE memfs_memory_file
#include <boost/test/unit_test.hpp>

#include "rdma/memory_file.hpp"
#include "tests/rdma/fixture.hpp"

#include <vector>

using namespace memlend;
using namespace memlend::rdma;

namespace {

constexpr std::uint64_t block = 64 << 10;

std::unique_ptr<MemoryFile> make_file(std::uint64_t bytes, std::shared_ptr<MirrorFile> mirror = {}) {
  MemoryFileConfig cfg;
  cfg.bytes = bytes;
  cfg.block_bytes = block;
  cfg.mirror = std::move(mirror);
  cfg.transport = TransportKind::tcp;
  cfg.timeouts.io = std::chrono::milliseconds(2000);
  auto f = MemoryFile::create(cfg);
  BOOST_TEST_REQUIRE(bool(f), (f ? "" : f.error().message));
  return std::move(*f);
}

void add(MemoryFile& f, std::uint64_t id, const LeaseTarget& t) {
  auto s = f.add_lease(id, t);
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
}

std::vector<std::uint8_t> patterned(std::uint64_t bytes, std::uint64_t pass, std::uint64_t at) {
  std::vector<std::uint8_t> v(bytes);
  for (std::uint64_t off = 0; off + 8 <= bytes; off += 8) {
    std::uint64_t w = test::pattern_word(pass, at + off);
    std::memcpy(v.data() + off, &w, 8);
  }
  return v;
}

void write_pattern(MemoryFile& f, std::uint64_t at, std::uint64_t bytes, std::uint64_t pass) {
  auto v = patterned(bytes, pass, at);
  auto s = f.write(at, v.data(), v.size());
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
}

bool holds_pattern(MemoryFile& f, std::uint64_t at, std::uint64_t bytes, std::uint64_t pass) {
  std::vector<std::uint8_t> got(bytes);
  auto s = f.read(at, got.data(), got.size());
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  return got == patterned(bytes, pass, at);
}

bool all_zero(MemoryFile& f, std::uint64_t at, std::uint64_t bytes) {
  std::vector<std::uint8_t> got(bytes, 0xAA);
  auto s = f.read(at, got.data(), got.size());
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  return std::all_of(got.begin(), got.end(), [](std::uint8_t b) { return b == 0; });
}

}  // namespace

BOOST_AUTO_TEST_CASE(blocks_are_placed_as_written_and_unwritten_ones_read_zeros_without_a_transfer) {
  test::LocalDonor donor(4 << 20);
  auto f = make_file(16 * block);
  add(*f, 1, donor.lease(8 * block));
  BOOST_TEST(all_zero(*f, 0, 16 * block));
  BOOST_TEST(f->stats().bytes_fetched == 0u);
  BOOST_TEST(f->stats().bytes_zero_filled == 16 * block);

  // Across a block boundary, at an offset no block starts at: the guest's
  // block choice, not the lease's layout, decides where data is.
  write_pattern(*f, 13 * block + 4096, block, 1);
  BOOST_TEST(f->stats().blocks_placed == 2u);
  BOOST_TEST(holds_pattern(*f, 13 * block + 4096, block, 1));
  BOOST_TEST(all_zero(*f, 13 * block, 4096));
  BOOST_TEST(f->stats().bytes_fetched >= block);
  BOOST_TEST(f->stats().bytes_written_back == block);
}

BOOST_AUTO_TEST_CASE(a_punch_reads_as_zeros_and_gives_the_memory_back_to_the_donor) {
  test::LocalDonor donor(4 << 20);
  auto f = make_file(16 * block);
  add(*f, 1, donor.lease(16 * block));
  write_pattern(*f, 0, 16 * block, 2);
  auto before = donor.pool->stats().resident_bytes;
  BOOST_TEST(before >= 16 * block);

  // Whole blocks go back; a partial one is zeroed in place.
  auto s = f->punch(2 * block, 8 * block + 4096);
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  BOOST_TEST(all_zero(*f, 2 * block, 8 * block + 4096));
  BOOST_TEST(holds_pattern(*f, 0, 2 * block, 2));
  BOOST_TEST(holds_pattern(*f, 10 * block + 4096, 6 * block - 4096, 2));
  BOOST_TEST(f->stats().blocks_placed == 8u);
  BOOST_TEST(f->stats().bytes_punched == 8 * block);
  BOOST_TEST(donor.pool->stats().resident_bytes <= before - 8 * block);

  // A punched block placed again starts from zeros, whatever it held.
  write_pattern(*f, 3 * block + 512, 512, 3);
  BOOST_TEST(all_zero(*f, 3 * block, 512));
  BOOST_TEST(holds_pattern(*f, 3 * block + 512, 512, 3));
  BOOST_TEST(all_zero(*f, 3 * block + 1024, block - 1024));
}

BOOST_AUTO_TEST_CASE(a_file_larger_than_its_leases_refuses_a_block_beyond_them_until_one_is_punched) {
  test::LocalDonor donor(4 << 20);
  auto f = make_file(8 * block);
  add(*f, 1, donor.lease(2 * block));
  write_pattern(*f, 0, 4096, 1);
  write_pattern(*f, 7 * block, 4096, 1);
  std::vector<std::uint8_t> page(4096, 1);
  auto full = f->write(3 * block, page.data(), page.size());
  BOOST_TEST(!full);
  BOOST_TEST((full.error().code == ErrorCode::refused));
  BOOST_TEST(all_zero(*f, 3 * block, block));
  BOOST_TEST_REQUIRE(bool(f->punch(0, block)));
  BOOST_TEST(bool(f->write(3 * block, page.data(), page.size())));
  BOOST_TEST(holds_pattern(*f, 7 * block, 4096, 1));

  BOOST_TEST(!f->read(8 * block - 8, page.data(), 16));
  BOOST_TEST(!f->resize(9 * block));
  BOOST_TEST_REQUIRE(bool(f->resize(7 * block)));
  BOOST_TEST(f->stats().blocks_placed == 1u);
}

BOOST_AUTO_TEST_CASE(a_dead_donor_is_served_from_the_mirror_and_rehoming_moves_its_blocks_to_a_new_one) {
  test::TempDir dir("memfile");
  auto mirror = MirrorFile::open(dir.path(), "vm", 16 * block, {FsyncPolicy::never, {}});
  BOOST_TEST_REQUIRE(bool(mirror));
  test::LocalDonor first(4 << 20), second(4 << 20);
  std::vector<RegionEvent::Kind> events;
  std::mutex mu;
  MemoryFileConfig cfg;
  cfg.bytes = 16 * block;
  cfg.block_bytes = block;
  cfg.mirror = *mirror;
  cfg.transport = TransportKind::tcp;
  cfg.on_event = [&](std::uint64_t, const RegionEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(e.kind);
  };
  auto made = MemoryFile::create(cfg);
  BOOST_TEST_REQUIRE(bool(made));
  auto& f = **made;
  add(f, 7, first.lease(8 * block));
  write_pattern(f, 0, 5 * block, 1);
  BOOST_TEST_REQUIRE(bool(f.punch(block, block)));

  first.server->stop();
  BOOST_TEST(holds_pattern(f, 0, block, 1));
  BOOST_TEST(all_zero(f, block, block));
  BOOST_TEST(holds_pattern(f, 2 * block, 3 * block, 1));
  auto st = f.stats();
  BOOST_TEST(st.failovers == 1u);
  BOOST_TEST(st.degraded_leases == 1u);
  BOOST_TEST(st.mirror_bytes_read >= 4 * block);
  // Written while degraded: to the mirror, and so to the new donor.
  write_pattern(f, 4 * block, block, 2);
  // A block first written now goes to the mirror alone, and the re-home
  // takes it along.
  write_pattern(f, 9 * block, 4096, 3);

  auto s = f.rehome(7, 8, second.lease(8 * block));
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  auto fetched = f.stats().bytes_fetched;
  auto mirror_read = f.stats().mirror_bytes_read;
  BOOST_TEST(holds_pattern(f, 0, block, 1));
  BOOST_TEST(holds_pattern(f, 2 * block, 2 * block, 1));
  BOOST_TEST(holds_pattern(f, 4 * block, block, 2));
  BOOST_TEST(holds_pattern(f, 9 * block, 4096, 3));
  BOOST_TEST(f.stats().bytes_fetched - fetched == 4 * block + 4096);
  BOOST_TEST(f.stats().mirror_bytes_read == mirror_read);
  BOOST_TEST(f.stats().degraded_leases == 0u);
  BOOST_TEST(f.stats().rehomes == 1u);
  BOOST_TEST((f.lease_ids() == std::vector<std::uint64_t>{8}));
  std::lock_guard<std::mutex> lock(mu);
  BOOST_TEST((std::find(events.begin(), events.end(), RegionEvent::Kind::failover_to_mirror) != events.end()));
  BOOST_TEST((std::find(events.begin(), events.end(), RegionEvent::Kind::rehomed) != events.end()));
}

BOOST_AUTO_TEST_CASE(without_a_mirror_a_dead_donors_blocks_are_lost_not_invented) {
  test::LocalDonor donor(4 << 20);
  auto f = make_file(8 * block);
  add(*f, 1, donor.lease(8 * block));
  write_pattern(*f, 0, 2 * block, 1);
  donor.server->stop();
  std::vector<std::uint8_t> got(4096);
  auto r = f->read(0, got.data(), got.size());
  BOOST_TEST(!r);
  BOOST_TEST((r.error().code == ErrorCode::lost));
  BOOST_TEST(f->stats().lost_leases == 1u);
  // Blocks never written still read as zeros: nothing of them was lost.
  BOOST_TEST(all_zero(*f, 4 * block, block));
  BOOST_TEST(!f->rehome(1, 2, donor.lease(8 * block)));
}

BOOST_AUTO_TEST_CASE(a_lease_taken_back_has_its_blocks_moved_to_the_others_first) {
  test::LocalDonor a(4 << 20), b(4 << 20);
  auto f = make_file(16 * block);
  add(*f, 1, a.lease(4 * block));
  write_pattern(*f, 0, 4 * block, 1);  // fills lease 1
  add(*f, 2, b.lease(4 * block));
  write_pattern(*f, 10 * block, block, 2);  // on lease 2
  // Lease 2 has three free slots, lease 1 holds four blocks.
  BOOST_TEST(!f->remove_lease(1));
  BOOST_TEST(holds_pattern(*f, 0, 4 * block, 1));
  BOOST_TEST_REQUIRE(bool(f->punch(0, block)));
  auto s = f->remove_lease(1);
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  a.server->stop();  // nothing may still need the lease given back
  BOOST_TEST(all_zero(*f, 0, block));
  BOOST_TEST(holds_pattern(*f, block, 3 * block, 1));
  BOOST_TEST(holds_pattern(*f, 10 * block, block, 2));
  BOOST_TEST(f->stats().leases == 1u);
  BOOST_TEST(f->stats().failovers == 0u);
}
