// The memory file's benchmark: lent memory as a VMM sees it through the FUSE
// mount (memfs/), beside the userfaultfd remote region and a bare connection
// to the lease, all three on one donor in this process over loopback TCP and
// measured in turn within each round, so that they share the machine's load:
//   - the memory file, mapped MAP_SHARED as QEMU maps a memdev: written and
//     msync'ed to the donor, read back after the pages left the page cache,
//     and faulted one random page at a time under MADV_RANDOM;
//   - the remote region (1 MiB blocks; 4 KiB blocks for the random faults);
//   - LeaseConnection read/write of 1 MiB and 4 KiB, the floor of both.
// Printed as a table of medians over rounds next to the memory file's targets.
//   bench_memfile [--mib N] [--rounds N] [--samples N]
#include "bench/rdma/measure.hpp"
#include "memfs/memory_fs.hpp"
#include "rdma/transport.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace memlend;
using namespace memlend::bench;

namespace {

constexpr std::uint64_t page = 4096;
constexpr std::uint64_t stream_block = 1 << 20;

const char* const usage = "usage: bench_memfile [--mib N (even, >= 16)] [--rounds N] [--samples N] [--help]";

struct Options {
  std::uint64_t bytes = 256ull << 20;
  int rounds = 5;
  int samples = 4000;
};

// One pass over the memory: MiB/s, and the CPU this process spent per MiB
// (every thread: the reader or writer, FUSE's, the region's, the donor's),
// which on two vCPUs bounds the MiB/s and swings far less with other load.
struct Pass {
  double mib_s = 0;
  double cpu_ms = 0;
};

// One round of one alternative.
struct Figures {
  Pass write;    // fresh lent memory filled, then on the donor
  Pass rewrite;  // the same again once it left the local buffer: fetched, written, written back
  Pass read;     // after it left the local buffer
  Latency random4k;
};

double cpu_seconds() {
  rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

template <typename F>
Pass timed(std::uint64_t bytes, F&& pass) {
  double cpu = cpu_seconds();
  auto t = Clock::now();
  pass();
  double mib = static_cast<double>(bytes) / (1 << 20);
  return {mib / seconds_since(t), (cpu_seconds() - cpu) * 1e3 / mib};
}

std::string mount_dir;

// However the run ends (a failure here or in measure.hpp exits), no dead
// mount is left behind: the kernel keeps one until it is unmounted.
void unmount_at_exit() {
  if (mount_dir.empty()) return;
  ::umount2(mount_dir.c_str(), MNT_DETACH);
  std::error_code ec;
  std::filesystem::remove_all(mount_dir, ec);
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_memfile: %s\n", what.c_str());
  std::exit(1);
}

// ---- the memory file, through a real FUSE mount ------------------------------

class MappedFile {
 public:
  MappedFile(Donor& d, const Options& o, const std::string& dir) : bytes_(o.bytes) {
    rdma::MemoryFileConfig cfg;
    cfg.bytes = bytes_;
    cfg.transport = rdma::TransportKind::tcp;
    auto f = rdma::MemoryFile::create(cfg);
    if (!f) die(f.error().message);
    file_ = std::move(*f);
    if (auto s = file_->add_lease(1, d.lease(bytes_)); !s) die(s.error().message);
    memfs::MountOptions mo;
    mo.mountpoint = dir;
    auto m = memfs::MemoryFs::mount(mo);
    if (!m) die(m.error().message);
    fs_ = std::move(*m);
    if (auto s = fs_->add_file("memory", file_); !s) die(s.error().message);
    fd_ = ::open(fs_->path_of("memory").c_str(), O_RDWR | O_CLOEXEC);
    if (fd_ < 0) die(fs_->path_of("memory") + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) == 0) bdi_ = std::to_string(major(st.st_dev)) + ":" + std::to_string(minor(st.st_dev));
  }
  ~MappedFile() {
    if (fd_ >= 0) ::close(fd_);
    fs_->stop();
  }

  Figures round(const Options& o, unsigned seed) {
    Figures f;
    // Fresh: every block given back to the donor, nothing cached.
    if (::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, static_cast<off_t>(bytes_)) != 0)
      die(std::string("punch: ") + std::strerror(errno));
    drop();
    auto* p = map();
    auto before = file_->stats();
    f.write = timed(bytes_, [&] {
      fill_all(p, bytes_, seed);
      sync(p);
    });
    auto after = file_->stats();
    write_kib_.push_back(
        per_request_kib(after.bytes_written_back - before.bytes_written_back, after.writes - before.writes));
    unmap(p);

    drop();
    p = map();
    f.rewrite = timed(bytes_, [&] {
      fill_all(p, bytes_, seed + 1);
      sync(p);
    });
    unmap(p);

    drop();
    p = map();
    before = file_->stats();
    f.read = timed(bytes_, [&] { sum_all(p, bytes_); });
    after = file_->stats();
    read_kib_.push_back(per_request_kib(after.bytes_fetched - before.bytes_fetched, after.reads - before.reads));
    unmap(p);

    // Each fault reads its one page (no read-around), and a page already in
    // the page cache would time no fault at all.
    drop();
    p = map();
    if (::madvise(p, bytes_, MADV_RANDOM) != 0) die(std::string("madvise: ") + std::strerror(errno));
    f.random4k = random_touch(p, bytes_, o.samples, seed, [&](std::uint64_t pg) {
      unsigned char v = 0;
      return ::mincore(p + pg * page, page, &v) == 0 && (v & 1);
    });
    unmap(p);
    return f;
  }

  // What the kernel used, for reading the figures: the mount's read-ahead
  // and dirty-page limits, and the sizes of the requests it sent.
  std::string notes() const {
    auto knob = [&](const char* name) {
      std::string v = "?";
      std::ifstream in("/sys/class/bdi/" + bdi_ + "/" + name);
      if (in) in >> v;
      return v;
    };
    char line[320];
    std::snprintf(line, sizeof line,
                  "memory file: FUSE READ %.0f KiB and WRITE %.0f KiB on average (medians of rounds); bdi "
                  "read_ahead_kb %s, strict_limit %s, max_ratio %s%s",
                  median(read_kib_), median(write_kib_), knob("read_ahead_kb").c_str(), knob("strict_limit").c_str(),
                  knob("max_ratio").c_str(), still_cached_ ? "; WARNING: pages stayed cached after a drop" : "");
    return line;
  }

 private:
  static double per_request_kib(std::uint64_t bytes, std::uint64_t requests) {
    return requests ? static_cast<double>(bytes) / static_cast<double>(requests) / 1024 : 0;
  }

  std::uint8_t* map() {
    void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) die(std::string("mmap: ") + std::strerror(errno));
    auto* b = static_cast<std::uint8_t*>(p);
    std::vector<unsigned char> v(bytes_ / page);
    if (::mincore(b, bytes_, v.data()) == 0)
      for (unsigned char c : v) still_cached_ |= (c & 1) != 0;
    return b;
  }
  void sync(std::uint8_t* p) {
    if (::msync(p, bytes_, MS_SYNC) != 0) die(std::string("msync: ") + std::strerror(errno));
  }
  void unmap(std::uint8_t* p) { ::munmap(p, bytes_); }
  // Unmapped and clean, the pages can go: the next touch asks the donor.
  void drop() {
    if (::posix_fadvise(fd_, 0, 0, POSIX_FADV_DONTNEED) != 0) die("posix_fadvise failed");
  }

  std::uint64_t bytes_;
  std::shared_ptr<rdma::MemoryFile> file_;
  std::unique_ptr<memfs::MemoryFs> fs_;
  int fd_ = -1;
  std::string bdi_;
  std::vector<double> read_kib_, write_kib_;
  bool still_cached_ = false;
};

// ---- the userfaultfd remote region ----------------------------------------------

// A fresh lease and region per round, given back at its end.
Figures region_round(Donor& d, const Options& o, unsigned seed) {
  Figures f;
  {
    auto lease = d.lease(o.bytes);
    rdma::RegionConfig cfg;
    cfg.bytes = o.bytes;
    cfg.block_bytes = stream_block;
    cfg.buffer_bytes = 16ull << 20;  // bench_datapath's
    auto region = open_region(lease, cfg);
    auto* p = static_cast<std::uint8_t*>(region->data());
    f.write = timed(o.bytes, [&] {
      fill_all(p, o.bytes, seed);
      (void)region->flush();
    });
    (void)region->evict_all();
    f.rewrite = timed(o.bytes, [&] {
      fill_all(p, o.bytes, seed + 1);
      (void)region->flush();
    });
    (void)region->evict_all();
    f.read = timed(o.bytes, [&] { sum_all(p, o.bytes); });
    (void)region->detach();
    (void)d.pool->revoke(lease.where.id);
  }
  {
    // Per 4 KiB fault, as the file's; not fresh, so that every fault fetches.
    auto lease = d.lease(o.bytes);
    rdma::RegionConfig cfg;
    cfg.bytes = o.bytes;
    cfg.block_bytes = page;
    cfg.buffer_bytes = 16ull << 20;
    cfg.fresh_lease = false;
    auto region = open_region(lease, cfg);
    f.random4k = random_touch(static_cast<const std::uint8_t*>(region->data()), o.bytes, o.samples, seed);
    (void)region->detach();
    (void)d.pool->revoke(lease.where.id);
  }
  return f;
}

// ---- a bare connection to the lease ----------------------------------------------

class Raw {
 public:
  Raw(Donor& d, const Options& o) : bytes_(o.bytes), buf_(stream_block) {
    auto c = rdma::connect_lease(d.lease(bytes_), rdma::TransportKind::tcp, rdma::Timeouts{});
    if (!c) die(c.error().message);
    c_ = std::move(*c);
  }

  Figures round(const Options& o, unsigned seed) {
    Figures f;
    f.write = timed(bytes_, [&] {
      for (std::uint64_t off = 0; off < bytes_; off += stream_block) {
        fill_all(buf_.data(), stream_block, seed + off);
        check(c_->write(off, buf_.data(), stream_block));
      }
    });
    f.read = timed(bytes_, [&] {
      for (std::uint64_t off = 0; off < bytes_; off += stream_block) {
        check(c_->read(off, buf_.data(), stream_block));
        sum_all(buf_.data(), stream_block);
      }
    });
    std::mt19937_64 rng(seed);
    std::vector<double> us;
    for (int i = 0; i < o.samples; ++i) {
      std::uint64_t off = rng() % (bytes_ / page) * page;
      auto t = Clock::now();
      check(c_->read(off, buf_.data(), page));
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
    }
    f.random4k = percentiles(std::move(us));
    return f;
  }

 private:
  static void check(const rdma::Status& s) {
    if (!s) die(s.error().message);
  }
  std::uint64_t bytes_;
  std::vector<std::uint8_t> buf_;
  std::unique_ptr<rdma::LeaseConnection> c_;
};

// ---- the run ---------------------------------------------------------------------

// An alternative's rounds; a figure is the median of its rounds.
struct Column {
  std::vector<Figures> rounds;

  template <typename Field>
  double med(Field field) const {
    std::vector<double> v;
    for (const auto& f : rounds) v.push_back(field(f));
    return median(std::move(v));
  }
  // Of the rounds' ratios to `other`: each pairs two measurements made
  // seconds apart, under the same load.
  template <typename Field>
  double ratio(const Column& other, Field field) const {
    std::vector<double> v;
    for (std::size_t i = 0; i < rounds.size() && i < other.rounds.size(); ++i)
      v.push_back(field(rounds[i]) / field(other.rounds[i]));
    return median(std::move(v));
  }
};

bool parse(int argc, char** argv, Options& o, bool& help) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      help = true;
      return true;
    }
    if (i + 1 >= argc) return false;
    char* end = nullptr;
    long long v = std::strtoll(argv[++i], &end, 10);
    if (!end || *end != '\0' || v <= 0) return false;
    if (a == "--mib" && v >= 16 && v % 2 == 0 && v <= (1ll << 20)) o.bytes = static_cast<std::uint64_t>(v) << 20;
    else if (a == "--rounds" && v <= 1000) o.rounds = static_cast<int>(v);
    else if (a == "--samples" && v <= 1000000) o.samples = static_cast<int>(v);
    else return false;
  }
  return true;
}

void print_row(const char* label, const Column& c, bool rewrite) {
  char rw[32] = "", rw_cpu[32] = "";
  if (rewrite) {
    std::snprintf(rw, sizeof rw, "%.0f", c.med([](const Figures& f) { return f.rewrite.mib_s; }));
    std::snprintf(rw_cpu, sizeof rw_cpu, "%.2f", c.med([](const Figures& f) { return f.rewrite.cpu_ms; }));
  }
  std::printf("%-46s %8.0f %8s %8.0f %9.1f %9.1f   %6.2f %6s %6.2f\n", label,
              c.med([](const Figures& f) { return f.write.mib_s; }), rw,
              c.med([](const Figures& f) { return f.read.mib_s; }),
              c.med([](const Figures& f) { return f.random4k.p50; }),
              c.med([](const Figures& f) { return f.random4k.p99; }),
              c.med([](const Figures& f) { return f.write.cpu_ms; }), rw_cpu,
              c.med([](const Figures& f) { return f.read.cpu_ms; }));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  bool help = false;
  if (!parse(argc, argv, o, help)) {
    std::fprintf(stderr, "%s\n", usage);
    return 2;
  }
  if (help) {
    std::printf("%s\n"
                "The memory file (a FUSE mount, mapped MAP_SHARED), the userfaultfd region and a bare\n"
                "connection, on one in-process donor over loopback TCP, interleaved round by round;\n"
                "prints medians of rounds. --mib: size of each (default 256); --rounds (default 5);\n"
                "--samples: random 4 KiB faults per round and alternative (default 4000). Needs root\n"
                "and /dev/fuse; says it skipped otherwise.\n",
                usage);
    return 0;
  }
  if (::geteuid() != 0 || ::access("/dev/fuse", R_OK | W_OK) != 0) {
    std::printf("bench_memfile: skipped: needs root and /dev/fuse (a FUSE mount)\n");
    return 0;
  }
  mount_dir = std::filesystem::temp_directory_path() / ("memlend-bench-memfile-" + std::to_string(::getpid()));
  std::filesystem::create_directories(mount_dir);
  std::atexit(unmount_at_exit);

  std::printf("memlend memory file benchmark: %llu MiB each, %d rounds, %d random 4 KiB faults per round, %u CPUs;\n"
              "donor in-process on loopback TCP; figures are medians of rounds; CPU: all threads of this process\n\n",
              static_cast<unsigned long long>(o.bytes >> 20), o.rounds, o.samples, std::thread::hardware_concurrency());
  std::fflush(stdout);
  Column file_col, region_col, raw_col;
  std::string notes;
  {
    // The file's lease and the bare one for the run, a region's two per round.
    Donor d = start_donor(4 * o.bytes, rdma::Timeouts{}.busy_poll);
    MappedFile file(d, o, mount_dir);
    Raw raw(d, o);
    for (int round = 0; round < o.rounds; ++round) {
      unsigned seed = 1000u * static_cast<unsigned>(round) + 1;
      // Each goes first in turn: whatever the order costs, all pay it.
      for (int k = 0; k < 3; ++k) {
        switch ((round + k) % 3) {
          case 0: file_col.rounds.push_back(file.round(o, seed)); break;
          case 1: region_col.rounds.push_back(region_round(d, o, seed)); break;
          default: raw_col.rounds.push_back(raw.round(o, seed)); break;
        }
      }
      const Figures &f = file_col.rounds.back(), &g = region_col.rounds.back();
      std::fprintf(stderr, "round %d: file / region: write %.0f / %.0f, rewrite %.0f / %.0f, read %.0f / %.0f MiB/s, "
                   "4K p50 %.1f / %.1f us\n", round, f.write.mib_s, g.write.mib_s, f.rewrite.mib_s, g.rewrite.mib_s,
                   f.read.mib_s, g.read.mib_s, f.random4k.p50, g.random4k.p50);
    }
    notes = file.notes();
  }

  std::printf("%-46s %8s %8s %8s %9s %9s   %-20s\n", "", "write", "rewrite", "read", "4K p50", "4K p99",
              "CPU ms per MiB");
  std::printf("%-46s %8s %8s %8s %9s %9s   %6s %6s %6s\n", "", "MiB/s", "MiB/s", "MiB/s", "us", "us", "write",
              "rewr", "read");
  print_row("memory file (FUSE, MAP_SHARED, msync)", file_col, true);
  print_row("userfaultfd region (1 MiB; 4 KiB blocks for 4K)", region_col, true);
  print_row("loopback TCP (LeaseConnection 1 MiB / 4 KiB)", raw_col, false);
  std::printf("%s\n", notes.c_str());

  auto verdict = [](bool ok) { return ok ? "met" : "MISSED"; };
  double w = file_col.ratio(region_col, [](const Figures& f) { return f.write.mib_s; });
  double rw = file_col.ratio(region_col, [](const Figures& f) { return f.rewrite.mib_s; });
  double r = file_col.ratio(region_col, [](const Figures& f) { return f.read.mib_s; });
  double l = file_col.ratio(region_col, [](const Figures& f) { return f.random4k.p50; });
  std::printf("\ntargets (medians of the rounds' ratios)            measured      target\n");
  std::printf("sequential write: memory file / region           %8.2fx      >= 1x     %s\n", w, verdict(w >= 1));
  std::printf("sequential rewrite: memory file / region         %8.2fx      >= 1x     %s\n", rw, verdict(rw >= 1));
  std::printf("sequential read: memory file / region            %8.2fx      >= 1x     %s\n", r, verdict(r >= 1));
  std::printf("4 KiB fault p50: memory file / region            %8.2fx      <= 2x     %s\n", l, verdict(l <= 2));
  return 0;
}
