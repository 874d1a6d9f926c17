// The guest's workload: what runs as init's payload in a QEMU guest whose
// hot-plugged virtio-mem memory lives on a file the host serves. It waits for
// the host to plug memory (through QMP, after boot), writes a deterministic
// pattern over most of the free memory, reads every word back, and says what
// it found in one line on the console, the only thing the host reads:
//
//   MEMLEND-GUEST ok bytes=N passes=P mib_plugged=M mib_on_plugged=K mem_total_mib=T ms=D
//                    first_write_ms=F write_ms=W verify_ms=V
//   MEMLEND-GUEST fail reason=WHY ...
//
// (the ok line wrapped here). ms counts from the start, the wait for the plug
// included, so a figure of throughput takes the loops' own times: write_ms and
// verify_ms, summed over the passes, and first_write_ms, the first pass's
// writes: the first touch of every page, dearest where the host serves the
// memory from elsewhere.
//
// With memlend.unplug=1 it then frees its memory and waits for the host to
// unplug it all: `MEMLEND-GUEST-UNPLUG ok mib_plugged=0` (or fail).
//
// With memlend.grow_mib=G the guest asks for nothing: it allocates G MiB more
// than it has available when it starts, so more than its boot memory holds, a
// chunk at a time, and whenever its available memory is down to
// memlend.floor_mib it stops and waits for the host to see that (through the
// balloon driver's statistics) and plug more. It says
// `MEMLEND-GUEST-SHORT available_mib=A held_mib=H` once, when it first waits;
// once it holds G MiB it writes and checks them as above and says the ok line.
//
// Settings come from the kernel command line, the one channel a host has into
// a guest with no disk and no network:
//   memlend.passes=P     write and check P times, each with its own pattern (1)
//   memlend.plug_mib=M   wait until at least M MiB are plugged before writing (0)
//   memlend.wait_s=S     how long a wait for the plug or the unplug may take (60)
//   memlend.fill_mib=F   write F MiB instead of most of MemAvailable (0)
//   memlend.unplug=1     then wait for the memory to be unplugged (0)
//   memlend.grow_mib=G   allocate G MiB beyond what is available, waiting
//                        for plugs on the way (0)
//   memlend.floor_mib=F  the available memory growing waits at (64)
//   memlend.recheck_s=R  after the ok line, check the last pattern again every
//                        second for R seconds, saying `MEMLEND-GUEST-RECHECK ok n=N`
//                        each time (or fail): a guest that moves to another
//                        host in the meantime shows there that its memory came along
//   memlend.linger_s=L   stay up L seconds after the last line (0): QEMU
//                        reports a size change up to a second late, and a
//                        guest that powers off at once takes QEMU with it
//
// Static, with no C++ streams: the initramfs holds no libraries and the guest
// runs under TCG, where every instruction counts.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

constexpr std::uint64_t mib = 1024 * 1024;

std::string slurp(const char* path) {
  std::string s;
  FILE* f = std::fopen(path, "r");
  if (!f) return s;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

// memlend.KEY=VALUE from the kernel command line, or `fallback`.
std::uint64_t setting(const std::string& cmdline, const std::string& key, std::uint64_t fallback) {
  std::string needle = "memlend." + key + "=";
  for (std::size_t at = cmdline.find(needle); at != std::string::npos; at = cmdline.find(needle, at + 1)) {
    if (at != 0 && cmdline[at - 1] != ' ') continue;
    return std::strtoull(cmdline.c_str() + at + needle.size(), nullptr, 10);
  }
  return fallback;
}

// A /proc/meminfo field, in bytes.
std::uint64_t meminfo(const char* field) {
  std::string text = slurp("/proc/meminfo");
  std::string needle = std::string(field) + ":";
  auto at = text.find(needle);
  if (at == std::string::npos) return 0;
  return std::strtoull(text.c_str() + at + needle.size(), nullptr, 10) * 1024;
}

struct Movable {
  std::uint64_t managed = 0;  // bytes the page allocator has in the zone
  std::uint64_t free = 0;
};

// ZONE_MOVABLE over all nodes. With memhp_default_state=online_movable every
// page virtio-mem plugs is onlined there and no boot page is, so its managed
// size is what the device plugged (pages of a partly plugged block that are
// not plugged are never handed to the allocator), whenever this is read: the
// plug may have come before this program started.
Movable movable_zone() {
  Movable m;
  std::string text = slurp("/proc/zoneinfo");
  long page = sysconf(_SC_PAGESIZE);
  bool in_movable = false;
  std::size_t at = 0;
  while (at < text.size()) {
    auto end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(at, end - at);
    at = end + 1;
    if (line.rfind("Node ", 0) == 0) {
      in_movable = line.find("zone") != std::string::npos && line.find("Movable") != std::string::npos;
      continue;
    }
    if (!in_movable) continue;
    auto word = line.find_first_not_of(' ');
    if (word == std::string::npos) continue;
    std::string rest = line.substr(word);
    if (rest.rfind("pages free", 0) == 0)
      m.free += std::strtoull(rest.c_str() + 10, nullptr, 10) * page;
    else if (rest.rfind("managed", 0) == 0)
      m.managed += std::strtoull(rest.c_str() + 7, nullptr, 10) * page;
  }
  return m;
}

// One write() for the whole line, so that no console output lands inside it.
void say(const std::string& line) {
  std::string l = line + "\n";
  ssize_t n = write(1, l.data(), l.size());
  (void)n;
}

std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, format);
  std::vsnprintf(buf, sizeof buf, format, ap);
  va_end(ap);
  return buf;
}

// Mixing the word's index keeps cheap under TCG and still tells a word that
// landed at another address (a wrong page, a stale block) from the right one.
inline std::uint64_t pattern(std::uint64_t index, std::uint64_t pass) {
  std::uint64_t x = (index + 1) * 0x9E3779B97F4A7C15ull ^ (pass * 0xD1B54A32D192ED03ull);
  return x ^ (x >> 29);
}

using Clock = std::chrono::steady_clock;

// Waits until `done(plugged bytes)` or the deadline; returns the last size read.
template <class Done>
std::uint64_t wait_plugged(Done done, std::uint64_t wait_s) {
  auto deadline = Clock::now() + std::chrono::seconds(wait_s);
  for (;;) {
    std::uint64_t plugged = movable_zone().managed;
    if (done(plugged) || Clock::now() >= deadline) return plugged;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Maps and touches `want` bytes a chunk at a time without running the guest
// out of memory (it has no swap: the OOM killer would end the test): at the
// floor it waits for MemAvailable to rise, which only a plug makes it do.
// Returns the mapping, or nullptr after saying why.
void* grow(std::uint64_t want, std::uint64_t floor, std::uint64_t wait_s) {
  constexpr std::uint64_t chunk = 8 * mib;
  void* mem = mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) {
    say(fmt("MEMLEND-GUEST fail reason=mmap bytes=%" PRIu64, want));
    return nullptr;
  }
  auto* bytes = static_cast<unsigned char*>(mem);
  long page = sysconf(_SC_PAGESIZE);
  bool told = false;
  for (std::uint64_t held = 0; held < want;) {
    std::uint64_t available = meminfo("MemAvailable");
    if (available < floor + chunk) {
      if (!told) say(fmt("MEMLEND-GUEST-SHORT available_mib=%" PRIu64 " held_mib=%" PRIu64, available / mib, held / mib));
      told = true;
      auto deadline = Clock::now() + std::chrono::seconds(wait_s);
      while (meminfo("MemAvailable") < floor + chunk && Clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      if (meminfo("MemAvailable") < floor + chunk) {
        say(fmt("MEMLEND-GUEST fail reason=no-plug available_mib=%" PRIu64 " held_mib=%" PRIu64 " mib_plugged=%" PRIu64,
                meminfo("MemAvailable") / mib, held / mib, movable_zone().managed / mib));
        munmap(mem, want);
        return nullptr;
      }
      continue;
    }
    std::uint64_t n = std::min(chunk, want - held);
    for (std::uint64_t at = 0; at < n; at += static_cast<std::uint64_t>(page)) bytes[held + at] = 1;
    held += n;
  }
  return mem;
}

}  // namespace

int main() {
  auto started = Clock::now();
  std::string cmdline = slurp("/proc/cmdline");
  std::uint64_t passes = setting(cmdline, "passes", 1);
  std::uint64_t plug = setting(cmdline, "plug_mib", 0) * mib;
  std::uint64_t wait_s = setting(cmdline, "wait_s", 60);
  std::uint64_t fill = setting(cmdline, "fill_mib", 0) * mib;
  bool unplug = setting(cmdline, "unplug", 0) != 0;
  std::uint64_t linger_s = setting(cmdline, "linger_s", 0);
  std::uint64_t recheck_s = setting(cmdline, "recheck_s", 0);
  std::uint64_t grow_to = setting(cmdline, "grow_mib", 0) * mib;
  std::uint64_t floor = setting(cmdline, "floor_mib", 64) * mib;
  if (passes == 0) passes = 1;

  std::uint64_t plugged = wait_plugged([&](std::uint64_t p) { return p >= plug; }, wait_s);
  if (plugged < plug) {
    say(fmt("MEMLEND-GUEST fail reason=plug-timeout mib_plugged=%" PRIu64 " mib_expected=%" PRIu64, plugged / mib,
            plug / mib));
    return 1;
  }

  if (grow_to > 0) fill = meminfo("MemAvailable") + grow_to;
  if (fill == 0) {
    // Most of what is free, less a reserve the kernel and init keep using: no
    // swap here, so an allocation too large ends in the OOM killer, not a result.
    std::uint64_t available = meminfo("MemAvailable");
    std::uint64_t reserve = std::max<std::uint64_t>(32 * mib, meminfo("MemTotal") / 16);
    fill = available > reserve ? available - reserve : 0;
  }
  fill &= ~(mib - 1);
  if (fill == 0) {
    say("MEMLEND-GUEST fail reason=no-free-memory");
    return 1;
  }
  void* mem = grow_to > 0 ? grow(fill, floor, wait_s)
                          : mmap(nullptr, fill, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (grow_to > 0 && mem == nullptr) return 1;
  if (mem == MAP_FAILED) {
    say(fmt("MEMLEND-GUEST fail reason=mmap bytes=%" PRIu64, fill));
    return 1;
  }
  auto* words = static_cast<std::uint64_t*>(mem);
  std::uint64_t count = fill / sizeof(std::uint64_t);
  std::uint64_t on_plugged = 0;
  Clock::duration first_write{}, write{}, verify{};
  for (std::uint64_t pass = 0; pass < passes; ++pass) {
    auto t = Clock::now();
    for (std::uint64_t i = 0; i < count; ++i) words[i] = pattern(i, pass);
    write += Clock::now() - t;
    if (pass == 0) {
      first_write = write;
      Movable m = movable_zone();
      on_plugged = m.managed - m.free;
    }
    t = Clock::now();
    for (std::uint64_t i = 0; i < count; ++i) {
      if (words[i] == pattern(i, pass)) continue;
      say(fmt("MEMLEND-GUEST fail reason=mismatch pass=%" PRIu64 " offset=%" PRIu64 " got=%016" PRIx64
              " want=%016" PRIx64,
              pass, i * 8, words[i], pattern(i, pass)));
      return 1;
    }
    verify += Clock::now() - t;
  }
  auto ms = [](Clock::duration d) {
    return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
  };
  say(fmt("MEMLEND-GUEST ok bytes=%" PRIu64 " passes=%" PRIu64 " mib_plugged=%" PRIu64 " mib_on_plugged=%" PRIu64
          " mem_total_mib=%" PRIu64 " ms=%ld first_write_ms=%ld write_ms=%ld verify_ms=%ld",
          fill, passes, movable_zone().managed / mib, on_plugged / mib, meminfo("MemTotal") / mib,
          ms(Clock::now() - started), ms(first_write), ms(write), ms(verify)));
  for (std::uint64_t n = 1; n <= recheck_s; ++n) {
    std::this_thread::sleep_for(std::chrono::seconds(1));
    for (std::uint64_t i = 0; i < count; ++i) {
      if (words[i] == pattern(i, passes - 1)) continue;
      say(fmt("MEMLEND-GUEST-RECHECK fail n=%" PRIu64 " offset=%" PRIu64, n, i * 8));
      return 1;
    }
    say(fmt("MEMLEND-GUEST-RECHECK ok n=%" PRIu64, n));
  }
  if (!unplug) {
    std::this_thread::sleep_for(std::chrono::seconds(linger_s));
    return 0;
  }

  // Unplugging migrates whatever lives in ZONE_MOVABLE away first: freeing our
  // pages leaves the guest's driver only free memory to give back.
  munmap(mem, fill);
  plugged = wait_plugged([](std::uint64_t p) { return p == 0; }, wait_s);
  if (plugged != 0) {
    say(fmt("MEMLEND-GUEST-UNPLUG fail reason=unplug-timeout mib_plugged=%" PRIu64, plugged / mib));
    return 1;
  }
  say("MEMLEND-GUEST-UNPLUG ok mib_plugged=0");
  std::this_thread::sleep_for(std::chrono::seconds(linger_s));
  return 0;
}
