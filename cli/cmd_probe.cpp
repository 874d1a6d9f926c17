// `memlend probe`: what ib_read_lat is to a fabric, this is to memlend's data
// path — map a lease through a remote region, push a pattern through the
// buffer so that blocks are evicted and fetched back, verify every byte.
#include "cli/cli.hpp"
#include "cli/datapath_flags.hpp"
#include "rdma/donor.hpp"
#include "rdma/region.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <csetjmp>
#include <csignal>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <numeric>
#include <random>
#include <unistd.h>

namespace memlend::cli {

namespace {

struct ProbeFlags {
  std::string donor;
  std::int64_t mib = 0;
  std::int64_t block_kib = 1024;
  std::int64_t buffer_kib = 0;
  std::string mirror_dir;
  std::string pattern = "seq";
  int passes = 2;
  std::string secret_file;
  std::string transport = "auto";
  bool json = false;
};

std::uint64_t word(std::uint64_t pass, std::uint64_t offset) {
  std::uint64_t x = (pass + 1) * 0x9E3779B97F4A7C15ull ^ offset;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  return x;
}

// A block that cannot be served (donor gone, no mirror) is poisoned and
// raises SIGBUS; the probe reports that instead of dying of it.
sigjmp_buf bus_jump;
void on_sigbus(int) { siglongjmp(bus_jump, 1); }

struct Result {
  std::uint64_t bytes_verified = 0;
  std::uint64_t mismatches = 0;  // bytes
  double write_s = 0, read_s = 0;
};

// One pass: write the pass's pattern a page at a time in `order`, then read
// it back in the same order.
void run_pass(std::uint8_t* p, std::uint64_t bytes, std::uint64_t pass, const std::vector<std::uint64_t>& order,
              std::uint64_t page, Result& r) {
  auto t0 = std::chrono::steady_clock::now();
  for (std::uint64_t pg : order) {
    std::uint64_t end = std::min(bytes, (pg + 1) * page);
    for (std::uint64_t off = pg * page; off + 8 <= end; off += 8) {
      std::uint64_t w = word(pass, off);
      std::memcpy(p + off, &w, 8);
    }
  }
  auto t1 = std::chrono::steady_clock::now();
  for (std::uint64_t pg : order) {
    std::uint64_t end = std::min(bytes, (pg + 1) * page);
    for (std::uint64_t off = pg * page; off + 8 <= end; off += 8) {
      std::uint64_t w;
      std::memcpy(&w, p + off, 8);
      std::uint64_t want = word(pass, off);
      if (w == want) continue;
      for (int i = 0; i < 8; ++i) r.mismatches += ((w >> (8 * i)) & 0xff) != ((want >> (8 * i)) & 0xff);
    }
    r.bytes_verified += end - pg * page;
  }
  auto t2 = std::chrono::steady_clock::now();
  r.write_s += std::chrono::duration<double>(t1 - t0).count();
  r.read_s += std::chrono::duration<double>(t2 - t1).count();
}

}  // namespace

Action add_probe(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "probe",
      "Check the data path to a donor: lease N MiB, map it into this process through\n"
      "a remote region, write a known pattern over it (more than the buffer, so blocks\n"
      "are evicted and fetched back), read it back and verify every byte. Prints\n"
      "faults, fault latency, throughput and mismatches; exits 0 only when every byte\n"
      "matched. With --mirror-dir the probe survives the donor's death mid-run.");
  auto f = std::make_shared<ProbeFlags>();
  cmd->add_option("--donor", f->donor, "The donor's address, host:port (as `memlend donor` printed it)")->required();
  cmd->add_option("--mib", f->mib, "Size of the lease to map, in MiB")->required();
  cmd->add_option("--block-kib", f->block_kib, "Transfer block, in KiB (rdma_block_kib; default 1024)");
  cmd->add_option("--buffer-kib", f->buffer_kib, "Local buffer, in KiB (default four blocks)");
  cmd->add_option("--mirror-dir", f->mirror_dir, "Mirror the region to a file in this directory (deleted at the end)")
      ->type_name("DIR");
  cmd->add_option("--pattern", f->pattern, "Access order: seq or random (pages in a random order)")
      ->type_name("{seq,random}");
  cmd->add_option("--passes", f->passes, "How many times to write and verify the whole region (default 2)");
  cmd->add_option("--secret-file", f->secret_file, "The donor's secret file")->type_name("FILE");
  cmd->add_option("--transport", f->transport, "auto, verbs or tcp (default auto)")->type_name("{auto,verbs,tcp}");
  cmd->add_flag("--json", f->json, "Print the result as one JSON object");
  return [f] {
    if (auto ep = rdma::parse_endpoint(f->donor); !ep) return bad_input("--donor: " + ep.error().message);
    if (f->mib <= 0 || f->mib > max_mib) return bad_input("--mib: must be between 1 and " + std::to_string(max_mib));
    if (f->block_kib < 4 || f->block_kib > (1 << 20)) return bad_input("--block-kib: must be between 4 and 1048576");
    if (f->buffer_kib == 0) f->buffer_kib = 4 * f->block_kib;
    if (f->buffer_kib < f->block_kib) return bad_input("--buffer-kib: must hold at least one block (" + std::to_string(f->block_kib) + ")");
    if (f->pattern != "seq" && f->pattern != "random") return bad_input("--pattern: \"" + f->pattern + "\" is not seq or random");
    if (f->passes < 1 || f->passes > 1000) return bad_input("--passes: must be between 1 and 1000");
    auto kind = rdma::parse_transport_kind(f->transport);
    if (!kind) return bad_input("--transport: \"" + f->transport + "\" is not one of auto, verbs, tcp");
    auto secret = load_secret(f->secret_file);
    if (!secret) return bad_input(secret.error().message);

    const std::uint64_t bytes = static_cast<std::uint64_t>(f->mib) << 20;
    auto client = rdma::DonorClient::connect(f->donor, *secret);
    if (!client) return failure(client.error().message);
    auto lease = (*client)->grant(bytes);
    if (!lease) return failure(lease.error().message);
    auto link = rdma::connect_link(*lease, *kind, {});
    if (!link) return failure(link.error().message);

    std::shared_ptr<rdma::MirrorFile> mirror;
    if (!f->mirror_dir.empty()) {
      auto m = rdma::MirrorFile::open(f->mirror_dir, "probe-" + std::to_string(::getpid()), bytes,
                                      {rdma::FsyncPolicy::never, {}});
      if (!m) return bad_input("--mirror-dir: " + m.error().message);
      mirror = *m;
    }
    rdma::RegionConfig cfg;
    cfg.bytes = bytes;
    cfg.block_bytes = static_cast<std::uint64_t>(f->block_kib) << 10;
    cfg.buffer_bytes = static_cast<std::uint64_t>(f->buffer_kib) << 10;
    cfg.mirror = mirror;
    cfg.on_event = [](const rdma::RegionEvent& e) {
      std::cerr << "memlend probe: " << rdma::region_event_name(e.kind) << ": " << e.detail << std::endl;
    };
    cfg.log = [](const std::string& line) { std::cerr << "memlend probe: " << line << std::endl; };
    auto region = rdma::RemoteRegion::create(cfg, std::move(*link));
    if (!region) return failure(region.error().message);
    auto* p = static_cast<std::uint8_t*>((*region)->data());

    const std::uint64_t page = 4096;
    std::vector<std::uint64_t> order((bytes + page - 1) / page);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 rng(42);
    Result r;
    struct sigaction sa {}, old {};
    sa.sa_handler = on_sigbus;
    sigaction(SIGBUS, &sa, &old);
    volatile bool lost = false;
    // Only what sigsetjmp's return may not clobber lives across it: `pass`
    // is volatile, everything else is left untouched until the jump is done.
    volatile int pass = 0;
    if (sigsetjmp(bus_jump, 1) == 0) {
      for (; pass < f->passes; pass = pass + 1) {
        if (f->pattern == "random") std::shuffle(order.begin(), order.end(), rng);
        run_pass(p, bytes, static_cast<std::uint64_t>(pass), order, page, r);
        std::cerr << "memlend probe: pass " << pass + 1 << " of " << f->passes << " verified" << std::endl;
      }
    } else {
      lost = true;
    }
    sigaction(SIGBUS, &old, nullptr);

    auto st = (*region)->stats();
    (void)(*region)->detach();
    if (st.state == rdma::RegionState::remote) (void)(*client)->release(*lease);
    if (mirror) (void)mirror->remove();

    double mib = static_cast<double>(r.bytes_verified) / (1 << 20);
    nlohmann::json j = {
        {"donor", f->donor},
        {"bytes", bytes},
        {"block_bytes", st.block_bytes},
        {"buffer_bytes", st.buffer_bytes},
        {"pattern", f->pattern},
        {"passes", f->passes},
        {"bytes_verified", r.bytes_verified},
        {"mismatches", r.mismatches},
        {"faults", st.faults},
        {"write_faults", st.write_faults},
        {"prefetches", st.prefetches},
        {"evictions", st.evictions},
        {"fault_p50_us", st.fault_latency.quantile_us(0.5)},
        {"fault_p99_us", st.fault_latency.quantile_us(0.99)},
        {"read_mib_s", r.read_s > 0 ? mib / r.read_s : 0.0},
        {"write_mib_s", r.write_s > 0 ? mib / r.write_s : 0.0},
        {"bytes_read", st.bytes_read},
        {"bytes_written", st.bytes_written},
        {"mirror_bytes_read", st.mirror_bytes_read},
        {"mirror_bytes_written", st.mirror_bytes_written},
        {"failovers", st.failovers},
        {"state", rdma::region_state_name(st.state)},
        {"backing", rdma::region_backing_name(st.backing)},
        {"error", lost ? "donor gone and no mirror: blocks were lost (" + st.error + ")" : st.error},
    };
    if (f->json) {
      std::cout << j.dump() << std::endl;
    } else {
      std::cout << std::fixed << std::setprecision(1) << "verified " << r.bytes_verified << " bytes, "
                << r.mismatches << " mismatches\n"
                << "faults " << st.faults << " (write " << st.write_faults << ", prefetched blocks " << st.prefetches
                << ", evictions " << st.evictions << "), fault latency p50 " << st.fault_latency.quantile_us(0.5)
                << " us, p99 " << st.fault_latency.quantile_us(0.99) << " us\n"
                << "read " << j["read_mib_s"].get<double>() << " MiB/s, write " << j["write_mib_s"].get<double>()
                << " MiB/s; failovers " << st.failovers << ", region " << rdma::region_state_name(st.state) << '\n';
    }
    if (lost) return failure("probe: the donor is gone and there is no mirror: the region's data was lost");
    return r.mismatches == 0 && r.bytes_verified > 0 ? exit_ok : exit_failure;
  };
}

}  // namespace memlend::cli
