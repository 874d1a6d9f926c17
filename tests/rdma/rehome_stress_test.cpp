// Donors fail again and again under a guest that keeps the buffer full: each
// time the region falls back to its mirror and is re-homed to a new donor
// while faults go on. A hang here (a wait with no way out) is what a stuck
// `memlend run` once was; a wrong word is memory lost on the way.
//
// MEMLEND_REHOME_ROUNDS sets the number of donor failures per backing (the
// soak target runs hundreds; the default keeps the test command short).
#define BOOST_TEST_MODULE rdma_rehome_stress
#include <boost/test/unit_test.hpp>

#include "tests/rdma/fixture.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>

using namespace memlend;
using namespace memlend::rdma;

namespace {

unsigned rounds() {
  const char* v = std::getenv("MEMLEND_REHOME_ROUNDS");
  if (!v) return 40;
  unsigned long n = std::strtoul(v, nullptr, 10);
  return n == 0 ? 40 : static_cast<unsigned>(n);
}

// A test that hangs says so and ends instead of waiting for ctest's timeout.
class Watchdog {
 public:
  explicit Watchdog(std::chrono::seconds limit)
      : thread_([this, limit] {
          std::unique_lock<std::mutex> lock(mu_);
          if (!cv_.wait_for(lock, limit, [this] { return done_; })) {
            std::fprintf(stderr, "rehome stress: no progress for %lld s: the data path hangs\n",
                         static_cast<long long>(limit.count()));
            std::abort();
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// Writes a pass over the whole region in a shuffled page order, then reads
// it all back, again and again, until told to stop.
struct Guest {
  Guest(std::uint8_t* p, std::uint64_t bytes) : p(p), bytes(bytes), thread([this] { run(); }) {}
  ~Guest() {
    stop = true;
    thread.join();
  }
  void run() {
    std::mt19937 rng(17);
    std::vector<std::uint64_t> pages(bytes / 4096);
    for (std::uint64_t i = 0; i < pages.size(); ++i) pages[i] = i;
    for (std::uint64_t pass = 100; !stop; ++pass) {
      std::shuffle(pages.begin(), pages.end(), rng);
      for (auto pg : pages) test::fill(p + pg * 4096, 4096, pass ^ pg);
      for (auto pg : pages) bad += test::check(p + pg * 4096, 4096, pass ^ pg);
      ++passes;
    }
  }
  std::uint8_t* p;
  std::uint64_t bytes;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> bad{0}, passes{0};
  std::thread thread;
};

void stress(RegionBacking backing) {
  BOOST_TEST_MESSAGE("backing " << region_backing_name(backing));
  constexpr std::uint64_t bytes = 4 << 20, pool = 8 << 20;
  test::TempDir dir("rehome-stress");
  auto mirror = MirrorFile::open(dir.path(), "vm", bytes, {FsyncPolicy::never, {}});
  BOOST_TEST_REQUIRE(bool(mirror));
  RegionConfig cfg;
  cfg.bytes = bytes;
  cfg.block_bytes = 64 << 10;
  cfg.buffer_bytes = 512 << 10;  // 8 blocks: the guest keeps it full
  cfg.mirror = *mirror;
  cfg.backing = backing;
  Timeouts t;
  t.connect = t.io = Millis(5000);
  cfg.timeouts = t;
  auto donor = std::make_unique<test::LocalDonor>(pool);
  auto first = RemoteRegion::create(cfg, donor->link(donor->lease(bytes), t));
  BOOST_TEST_REQUIRE(bool(first), (first ? "" : first.error().message));
  auto region = std::move(*first);
  auto* p = static_cast<std::uint8_t*>(region->data());
  const unsigned n = rounds();
  unsigned moved = 0;
  {
    Guest guest(p, bytes);
    for (unsigned i = 0; i < n; ++i) {
      Watchdog dog(std::chrono::seconds(60));
      auto next = std::make_unique<test::LocalDonor>(pool);
      if (i % 2) {
        // The control plane knows first.
        region->fail_over("stress: donor " + std::to_string(i) + " declared dead");
        donor.reset();
      } else {
        // The donor dies unannounced: a fault or a write-back finds out,
        // or the control plane a moment later.
        donor.reset();
        region->fail_over("stress: donor " + std::to_string(i) + " gone");
      }
      BOOST_TEST_REQUIRE((region->state() == RegionState::degraded));
      auto moved_to = region->rehome(next->link(next->lease(bytes), t));
      BOOST_TEST_REQUIRE(bool(moved_to), "round " << i << ": " << (moved_to ? "" : moved_to.error().message));
      BOOST_TEST_REQUIRE((region->state() == RegionState::remote));
      donor = std::move(next);
      ++moved;
    }
    // At least one whole pass of the guest after the last move.
    Watchdog dog(std::chrono::seconds(60));
    auto until = guest.passes.load() + 2;
    while (guest.passes.load() < until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    BOOST_TEST(guest.bad.load() == 0u);
    BOOST_TEST_MESSAGE("guest passes " << guest.passes.load());
  }
  auto st = region->stats();
  BOOST_TEST(moved == n);
  BOOST_TEST(st.rehomes == n);
  BOOST_TEST(st.failovers == n);
  Watchdog dog(std::chrono::seconds(60));
  BOOST_TEST_REQUIRE(bool(region->detach()));
}

}  // namespace

BOOST_AUTO_TEST_CASE(rehome_under_a_full_buffer_anonymous) { stress(RegionBacking::anonymous); }

BOOST_AUTO_TEST_CASE(rehome_under_a_full_buffer_memfd) { stress(RegionBacking::memfd); }
