// The guest-side figure: the guest of tests/guest/ (QEMU under TCG, one vCPU)
// writes a pattern over memory hot-plugged through virtio-mem, twice, and
// checks it, with that memory on
//   (a) a plain sparse file in a directory on disk (the temporary directory),
//   (b) a `memlend mount` file lent by a `memlend donor` over loopback TCP,
//   (c) the same as (b), QEMU in a memory cgroup smaller than what the guest
//       writes, so that pages go to the donor and come back;
// one after the other in every round, so that whatever else loads the machine
// weighs on all three alike. It prints the MB/s the guest measures, the
// medians side by side, and lent/local.
#include "tests/guest/guest_support.hpp"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

using namespace memlend;
using namespace memlend::test;
using namespace std::chrono_literals;

namespace {

const char* const usage =
    "usage: bench_guest [--rounds N] [--plug-mib N] [--fill-mib N] [--cgroup-mib N] [--no-mirror]\n"
    "  Boots the guest of tests/guest/ (QEMU under TCG) once per round on each of\n"
    "  (a) a local file, (b) a `memlend mount` file a `memlend donor` lends over\n"
    "  loopback TCP, (c) the same as (b) in a memory cgroup; prints the guest's MB/s\n"
    "  (first write, rewrite, verify: medians over the rounds) and lent/local.\n"
    "  --rounds N      rounds (3)\n"
    "  --plug-mib N    virtio-mem memory plugged, a multiple of 128 (640)\n"
    "  --fill-mib N    what the guest writes, at most the plugged memory (600)\n"
    "  --cgroup-mib N  (c)'s memory cgroup; 0: no (c) (384: QEMU's own ~280 MiB\n"
    "                  leaves ~100 MiB of page cache)\n"
    "  --no-mirror     (b) and (c) without `memlend mount --mirror-dir`\n"
    "  Needs root, /dev/fuse, qemu-system-x86_64 and the build's guest image;\n"
    "  without one of them it says why on one line and exits 0 (so that\n"
    "  packaging/build.sh bench goes on). (c) alone is skipped, saying why, where\n"
    "  no memory cgroup can be had. Exit 1: a run failed; 2: a bad flag;\n"
    "  130: interrupted.\n";

struct Options {
  int rounds = 3;
  std::uint64_t plug = 640 * mib;
  std::uint64_t fill = 600 * mib;
  std::uint64_t cgroup = 384 * mib;
  bool mirror = true;
};

[[noreturn]] void bad_flag(const std::string& why) {
  std::fprintf(stderr, "bench_guest: %s (--help says more)\n", why.c_str());
  std::exit(2);
}

std::uint64_t number(int argc, char** argv, int& i) {
  std::string flag = argv[i];
  if (++i >= argc) bad_flag(flag + " needs a number");
  std::string v = argv[i];
  if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos)
    bad_flag(flag + ": not a whole number below 10^9: " + v);
  return std::stoull(v);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    } else if (a == "--rounds") {
      o.rounds = static_cast<int>(number(argc, argv, i));
    } else if (a == "--plug-mib") {
      o.plug = number(argc, argv, i) * mib;
    } else if (a == "--fill-mib") {
      o.fill = number(argc, argv, i) * mib;
    } else if (a == "--cgroup-mib") {
      o.cgroup = number(argc, argv, i) * mib;
    } else if (a == "--no-mirror") {
      o.mirror = false;
    } else {
      bad_flag("unknown flag " + a);
    }
  }
  if (o.rounds < 1) bad_flag("--rounds must be at least 1");
  // The guest's kernel adds memory in 128 MiB sections: a device smaller than one is never plugged.
  if (o.plug == 0 || o.plug % (128 * mib) != 0) bad_flag("--plug-mib must be a positive multiple of 128");
  if (o.fill == 0 || o.fill > o.plug) bad_flag("--fill-mib must be from 1 to --plug-mib");
  return o;
}

// Ctrl-C ends the guest that runs (its wait returns at once) and then the
// bench, through the same paths as a failure, so that no QEMU, mount or donor
// and none of their directories stay behind; a second one ends it at once.
std::atomic<pid_t> running_qemu{0};
volatile std::sig_atomic_t interrupted = 0;

extern "C" void on_signal(int) {
  if (interrupted) std::_Exit(130);
  interrupted = 1;
  pid_t p = running_qemu.load();
  if (p > 0) ::kill(-p, SIGTERM);
}

struct Interrupted {};

enum Memory { local, lent, lent_in_cgroup };
const char* const names[] = {"(a) local file", "(b) lent", "(c) lent, in a cgroup"};

// MB/s as the guest measured them, and what memlend moved.
struct Figures {
  double first_write = 0, rewrite = 0, verify = 0;
  double seconds = 0;  // QEMU's start to the guest's result
  std::uint64_t written_back = 0, fetched = 0;
};

// 10^6 bytes a second; the guest counts whole milliseconds, and a tiny --fill-mib may take none.
double mbps(std::uint64_t bytes, std::uint64_t ms) {
  return static_cast<double>(bytes) / 1e3 / static_cast<double>(std::max<std::uint64_t>(ms, 1));
}

Figures run_guest(const Options& o, const std::string& file, std::uint64_t cgroup_limit) {
  if (interrupted) throw Interrupted{};
  auto started = std::chrono::steady_clock::now();
  auto guest = boot_and_plug(PlugOptions{file, o.plug, o.plug, "memlend.fill_mib=" + std::to_string(o.fill / mib),
                                         cgroup_limit});
  if (interrupted) throw Interrupted{};
  if (!guest) throw std::runtime_error("the guest did not boot and plug: " + guest.error().message);
  QemuGuest& g = **guest;
  running_qemu = g.pid();
  std::string line = g.wait_line("MEMLEND-GUEST ", 600s);
  running_qemu = 0;
  if (interrupted) throw Interrupted{};
  if (line.find("MEMLEND-GUEST ok ") == std::string::npos)
    throw std::runtime_error("the guest failed: " + (line.empty() ? tail(g.console()) : line));
  Figures f;
  f.seconds = seconds_since(started);
  std::uint64_t bytes = field(line, "bytes"), passes = field(line, "passes");
  std::uint64_t first = field(line, "first_write_ms"), write = field(line, "write_ms");
  f.first_write = mbps(bytes, first);
  f.rewrite = passes > 1 ? mbps(bytes * (passes - 1), write - first) : 0;
  f.verify = mbps(bytes * passes, field(line, "verify_ms"));
  auto status = quit(g);
  if (!status || *status != 0)
    throw std::runtime_error("QEMU did not quit: " + (status ? std::to_string(*status) : status.error().message));
  return f;
}

Figures run(const Options& o, Memory m) {
  if (m == local) {
    LocalMemory file(o.plug);
    return run_guest(o, file.file(), 0);
  }
  LentMemory memory(o.plug, o.mirror);
  Figures f = run_guest(o, memory.file(), m == lent_in_cgroup ? o.cgroup : 0);
  auto j = memory.counters();
  f.written_back = j["bytes_written_back"].get<std::uint64_t>();
  f.fetched = j["bytes_fetched"].get<std::uint64_t>();
  if (j["errors"].get<std::uint64_t>() != 0) throw std::runtime_error("memlend mount counted errors: " + j.dump());
  return f;
}

double median(const std::vector<Figures>& runs, double Figures::*what) {
  std::vector<double> v;
  for (const auto& r : runs) v.push_back(r.*what);
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

void print_row(const char* name, double a, double b, double c, const char* format) {
  std::printf("  %-28s", name);
  for (double x : {a, b, c}) std::printf(format, x);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  std::string why = why_no_guest();
  if (why.empty()) why = why_no_fuse();
  if (!why.empty()) {
    std::printf("bench_guest: skipped: %s\n", why.c_str());
    return 0;
  }
  std::vector<Memory> memories = {local, lent};
  std::string no_cgroup = o.cgroup == 0 ? "--cgroup-mib 0" : why_no_guest_in_a_cgroup();
  if (no_cgroup.empty()) memories.push_back(lent_in_cgroup);

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);

  std::printf("bench_guest: a guest (QEMU, TCG, 1 vCPU, 256 MiB of its own) writes %llu MiB twice and verifies it,\n"
              "on %llu MiB plugged through virtio-mem; %s; MB/s as the guest measures them, %d round%s\n",
              static_cast<unsigned long long>(o.fill / mib), static_cast<unsigned long long>(o.plug / mib),
              o.mirror ? "memlend mount with a mirror on disk" : "memlend mount without a mirror", o.rounds,
              o.rounds > 1 ? "s" : "");
  if (LocalMemory(mib).in_ram()) std::printf("note: the temporary directory is a tmpfs: (a)'s file is in RAM\n");
  if (!no_cgroup.empty()) std::printf("(c) skipped: %s\n", no_cgroup.c_str());
  std::fflush(stdout);

  std::vector<std::vector<Figures>> figures(3);
  try {
    for (int round = 1; round <= o.rounds; ++round) {
      for (Memory m : memories) {
        Figures f = run(o, m);
        figures[m].push_back(f);
        std::printf("round %d %-24s first write %7.1f  rewrite %7.1f  verify %7.1f MB/s  (%.0f s", round, names[m],
                    f.first_write, f.rewrite, f.verify, f.seconds);
        if (m != local)
          std::printf("; written back %llu MiB, fetched %llu MiB", static_cast<unsigned long long>(f.written_back / mib),
                      static_cast<unsigned long long>(f.fetched / mib));
        std::printf(")\n");
        std::fflush(stdout);
      }
    }
  } catch (const Interrupted&) {
    std::fprintf(stderr, "bench_guest: interrupted\n");
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_guest: %s\n", e.what());
    return 1;
  }

  std::printf("\n  %-28s%10s%10s%10s\n", ("MB/s, median of " + std::to_string(o.rounds)).c_str(), "1st write",
              "rewrite", "verify");
  double base[3] = {};
  for (Memory m : memories) {
    double row[3];
    int i = 0;
    for (auto what : {&Figures::first_write, &Figures::rewrite, &Figures::verify})
      row[i++] = median(figures[m], what);
    if (m == local) std::copy(row, row + 3, base);
    std::string name = names[m];
    if (m == lent_in_cgroup) name = "(c) lent, " + std::to_string(o.cgroup / mib) + " MiB cgroup";
    print_row(name.c_str(), row[0], row[1], row[2], "%10.1f");
    if (m != local) print_row("    lent/local", row[0] / base[0], row[1] / base[1], row[2] / base[2], "%10.2f");
  }
  return 0;
}
