#include "demo/guest_workload.hpp"

#include <chrono>
#include <csetjmp>
#include <csignal>

namespace memlend::demo {

namespace {

// The guest's pattern: every 8 bytes name the VM's lease, the round and the
// offset, so a byte in the wrong place, from another lease or from an older
// round is caught.
std::uint64_t word(std::uint64_t lease, std::uint64_t generation, std::uint64_t offset) {
  std::uint64_t x = lease * 0x9e3779b97f4a7c15ULL ^ (generation + 1) * 0xc2b2ae3d27d4eb4fULL ^ offset;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  return x ^ (x >> 29);
}

// The guest touches this much at a time, then lets the others have a turn.
constexpr std::uint64_t step_bytes = 256 * 1024;

// One step of the guest over [from, to) of a region: plain values only, so
// that leaving it by siglongjmp skips no destructor.
struct GuestStep {
  std::uint64_t* base;
  std::uint64_t from, to;
  std::uint64_t origin, generation;
  bool verifying;
  std::uint64_t bad;
};

__attribute__((noinline)) void touch(GuestStep& s) {
  for (std::uint64_t off = s.from; off < s.to; off += 8) {
    std::uint64_t want = word(s.origin, s.generation, off);
    if (!s.verifying)
      s.base[off / 8] = want;
    else if (s.base[off / 8] != want)
      ++s.bad;
  }
}

// Remote memory nobody can serve is poisoned: touching it raises SIGBUS, as
// a hardware memory error would. A VMM turns that into an error its guest
// sees; this guest notes the memory as lost and leaves it alone, rather
// than the whole process dying of it.
thread_local sigjmp_buf* guest_jump = nullptr;

void on_sigbus(int sig, siginfo_t*, void*) {
  if (guest_jump) siglongjmp(*guest_jump, 1);
  // Not the guest's: what SIGBUS would have done without us.
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// Each time a guest starts: another handler (a test harness's) may have
// taken SIGBUS since.
void catch_sigbus() {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  struct sigaction now {};
  ::sigaction(SIGBUS, nullptr, &now);
  if ((now.sa_flags & SA_SIGINFO) && now.sa_sigaction == on_sigbus) return;
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, nullptr);
}

// False: the step took SIGBUS.
bool touch_guarded(GuestStep& s) {
  sigjmp_buf jump;
  if (sigsetjmp(jump, 1)) {
    guest_jump = nullptr;
    return false;
  }
  guest_jump = &jump;
  touch(s);
  guest_jump = nullptr;
  return true;
}

}  // namespace

GuestWorkload::GuestWorkload(DataPlane& plane) : plane_(plane) {
  thread_ = std::thread([this] { loop(); });
}

GuestWorkload::~GuestWorkload() { stop(); }

void GuestWorkload::stop() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
}

GuestStats GuestWorkload::stats(const std::string& vm) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = stats_.find(vm);
  return it == stats_.end() ? GuestStats{} : it->second;
}

// One step over one region, under its touch lock.
void GuestWorkload::step(const DataPlane::Touch& t) {
  Place& p = places_[{t.vm, t.origin}];
  if (p.lost || t.region.state() == rdma::RegionState::detached) return;
  std::uint64_t written = 0, verified = 0, bad = 0, lost = 0;
  bool round_done = false;
  std::uint64_t size = t.region.size() / 8 * 8;
  std::uint64_t end = std::min(size, p.cursor + step_bytes);
  GuestStep s{static_cast<std::uint64_t*>(t.region.data()), p.cursor, end, t.origin, p.generation, p.verifying, 0};
  // A failed region's blocks that could not be poisoned read as zeros
  // (the region says its data is lost): memory lost, not words wrong.
  if (!touch_guarded(s) || (s.bad > 0 && t.region.state() == rdma::RegionState::failed)) {
    p.lost = true;
    lost = size;
  }
  bad = p.lost ? 0 : s.bad;
  if (!p.lost) (p.verifying ? verified : written) += end - p.cursor;
  p.cursor = end;
  if (p.cursor >= size) {
    p.cursor = 0;
    if (p.verifying) {
      ++p.generation;
      round_done = true;
    }
    p.verifying = !p.verifying;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto& g = stats_[t.vm];
  g.bytes_written += written;
  g.bytes_verified += verified;
  g.mismatches += bad;
  g.lost_bytes += lost;
  if (round_done) ++g.passes;
}

// Round after round, writes the pattern over each region and then reads it
// all back, a step at a time, so that blocks are evicted, written back to
// donor and mirror, and fetched again. A mismatch is memory lost.
void GuestWorkload::loop() {
  catch_sigbus();
  std::size_t next = 0;
  while (!stopping_) {
    bool any = plane_.touch_region(next++, [this](const DataPlane::Touch& t) { step(t); });
    // A guest, not a benchmark: leave the CPU to the rest.
    std::this_thread::sleep_for(std::chrono::milliseconds(any ? 5 : 50));
  }
}

}  // namespace memlend::demo
