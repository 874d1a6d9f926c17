// `memlend mount`: one lease served as a file, DIR/memory, that a VMM maps
// shared (a virtio-mem memdev), until SIGINT or SIGTERM. The operator's way
// to put a guest on lent memory by hand, and what the guest tests drive.
#include "core/stop_signals.hpp"
#include "cli/cli.hpp"
#include "cli/datapath_flags.hpp"
#include "memfs/memory_fs.hpp"
#include "rdma/donor.hpp"
#include "rdma/memory_file.hpp"

#include <nlohmann/json.hpp>

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <iostream>
#include <mutex>

namespace memlend::cli {

namespace {

struct MountFlags {
  std::string donor;
  std::int64_t mib = 0;
  std::string mountpoint;
  std::int64_t block_kib = 2048;
  std::string mirror_dir;
  std::string secret_file;
  std::string transport = "auto";
  std::string owner;
  bool json = false;
};

// "USER", "USER:GROUP", "UID" or "UID:GID": whom the file belongs to.
Expected<std::pair<uid_t, gid_t>> parse_owner(const std::string& text) {
  auto colon = text.find(':');
  std::string user = text.substr(0, colon), grp = colon == std::string::npos ? "" : text.substr(colon + 1);
  uid_t uid;
  gid_t gid;
  if (const passwd* pw = ::getpwnam(user.c_str())) {
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  } else if (!user.empty() && user.find_first_not_of("0123456789") == std::string::npos && user.size() < 10) {
    uid = static_cast<uid_t>(std::stoul(user));
    gid = static_cast<gid_t>(uid);
  } else {
    return Error{"--owner: no user \"" + user + "\""};
  }
  if (!grp.empty()) {
    if (const struct group* gr = ::getgrnam(grp.c_str())) gid = gr->gr_gid;
    else if (grp.find_first_not_of("0123456789") == std::string::npos && grp.size() < 10)
      gid = static_cast<gid_t>(std::stoul(grp));
    else return Error{"--owner: no group \"" + grp + "\""};
  }
  return std::make_pair(uid, gid);
}

}  // namespace

Action add_mount(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "mount",
      "Lease MIB MiB from a donor and serve it as one file, DIR/memory, until SIGINT or\n"
      "SIGTERM: a VMM maps it shared as guest memory (QEMU: memory-backend-file,share=on,\n"
      "mem-path=DIR/memory under a virtio-mem device). Reads fetch from the donor, writes\n"
      "go to the donor and the mirror before they are answered, fallocate(PUNCH_HOLE)\n"
      "gives memory back to the donor. The host's page cache is the local buffer: bound\n"
      "it with the VMM's memory cgroup. Prints its counters on exit.");
  auto f = std::make_shared<MountFlags>();
  cmd->add_option("--donor", f->donor, "ADDR: the donor, host:port (as `memlend donor` printed it)")->required();
  cmd->add_option("--mib", f->mib, "MIB: size of the lease and of the file")->required();
  cmd->add_option("--mountpoint", f->mountpoint, "An existing, empty directory to mount on")->type_name("DIR")->required();
  cmd->add_option("--block-kib", f->block_kib,
                  "KIB: placement block; punches free whole blocks (default 2048, virtio-mem's block)");
  cmd->add_option("--mirror-dir", f->mirror_dir,
                  "Mirror the file there, so the donor's death loses nothing (deleted on exit)")
      ->type_name("DIR");
  cmd->add_option("--secret-file", f->secret_file, "The donor's secret file")->type_name("FILE");
  cmd->add_option("--transport", f->transport, "auto, verbs or tcp (default auto)")->type_name("{auto,verbs,tcp}");
  cmd->add_option("--owner", f->owner, "USER[:GROUP]: who may open the file (mode 0600; default: you)");
  cmd->add_flag("--json", f->json, "Print the counters on exit as one JSON object");
  return [f] {
    if (auto ep = rdma::parse_endpoint(f->donor); !ep) return bad_input("--donor: " + ep.error().message);
    if (f->mib <= 0 || f->mib > max_mib) return bad_input("--mib: must be between 1 and " + std::to_string(max_mib));
    if (f->block_kib < 4 || f->block_kib > (1 << 20) || f->block_kib % 4 != 0)
      return bad_input("--block-kib: must be a multiple of 4 between 4 and 1048576");
    const std::uint64_t bytes = static_cast<std::uint64_t>(f->mib) << 20;
    const std::uint64_t block = static_cast<std::uint64_t>(f->block_kib) << 10;
    if (bytes % block != 0) return bad_input("--mib: " + std::to_string(f->mib) + " MiB is not a whole number of " +
                                             std::to_string(f->block_kib) + " KiB blocks");
    auto kind = rdma::parse_transport_kind(f->transport);
    if (!kind) return bad_input("--transport: \"" + f->transport + "\" is not one of auto, verbs, tcp");
    memfs::MountOptions mo;
    mo.mountpoint = f->mountpoint;
    if (!f->owner.empty()) {
      auto o = parse_owner(f->owner);
      if (!o) return bad_input(o.error().message);
      mo.owner_uid = o->first;
      mo.owner_gid = o->second;
      mo.owner_set = true;
    }
    if (auto s = memfs::check_mountpoint(f->mountpoint); !s) return bad_input("--mountpoint: " + s.error().message);
    if (::access("/dev/fuse", R_OK | W_OK) != 0) return failure("mount: /dev/fuse cannot be opened (no FUSE here?)");
    auto secret = load_secret(f->secret_file);
    if (!secret) return bad_input(secret.error().message);

    // Signals are taken by sigwait below, so every thread must block them.
    StopSignalsBlocked blocked;
    sigset_t stop = stop_signals();
    std::mutex log_mu;
    auto log = [&log_mu](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mu);
      std::cerr << "memlend mount: " << line << std::endl;
    };

    auto client = rdma::DonorClient::connect(f->donor, *secret);
    if (!client) return bad_input("--donor: " + client.error().message);
    auto lease = (*client)->grant(bytes);
    if (!lease) return bad_input("--donor: " + f->donor + " lends no " + std::to_string(f->mib) + " MiB: " + lease.error().message);
    auto release = [&] { (void)(*client)->release(*lease); };

    std::shared_ptr<rdma::MirrorFile> mirror;
    if (!f->mirror_dir.empty()) {
      auto m = rdma::MirrorFile::open(f->mirror_dir, "mount-" + std::to_string(::getpid()), bytes,
                                      {rdma::FsyncPolicy::interval, std::chrono::milliseconds(1000)});
      if (!m) {
        release();
        return bad_input("--mirror-dir: " + m.error().message);
      }
      mirror = *m;
    }
    rdma::MemoryFileConfig cfg;
    cfg.bytes = bytes;
    cfg.block_bytes = block;
    cfg.mirror = mirror;
    cfg.transport = *kind;
    cfg.on_event = [&log](std::uint64_t, const rdma::RegionEvent& e) { log(std::string(rdma::region_event_name(e.kind)) + ": " + e.detail); };
    auto file = rdma::MemoryFile::create(cfg);
    rdma::Status added = file ? (*file)->add_lease(lease->where.id, *lease) : rdma::Status(file.error());
    if (!added) {
      release();
      if (mirror) (void)mirror->remove();
      return failure("mount: " + added.error().message);
    }
    std::shared_ptr<rdma::MemoryFile> served = std::move(*file);

    if (auto missing = memfs::harden_server_process(); !missing.empty())
      log("under memory pressure this server may deadlock with the reclaim it serves: " + missing);
    mo.log = log;
    auto fs = memfs::MemoryFs::mount(mo);
    rdma::Status up = fs ? (*fs)->add_file("memory", served) : rdma::Status(fs.error());
    if (!up) {
      if (fs) (*fs)->stop();
      release();
      if (mirror) (void)mirror->remove();
      return failure("mount: " + up.error().message);
    }
    log("serving " + (*fs)->path_of("memory") + ": " + std::to_string(f->mib) + " MiB lent by " + f->donor +
        " (lease " + std::to_string(lease->where.id) + ")" + (mirror ? ", mirrored to " + mirror->path() : ""));
    int sig = 0;
    sigwait(&stop, &sig);
    (*fs)->stop();
    auto st = served->stats();
    auto fst = (*fs)->stats();
    bool donor_alive = st.degraded_leases == 0 && st.lost_leases == 0;
    if (donor_alive) release();
    if (mirror) (void)mirror->remove();
    log("stopped by signal " + std::to_string(sig) + (donor_alive ? "; the lease is released" : "; the donor was lost"));

    nlohmann::json j = {
        {"donor", f->donor},
        {"bytes", bytes},
        {"block_bytes", block},
        {"reads", fst.reads},
        {"writes", fst.writes},
        {"punches", fst.punches},
        {"errors", fst.errors},
        {"bytes_fetched", st.bytes_fetched},
        {"bytes_zero_filled", st.bytes_zero_filled},
        {"bytes_written_back", st.bytes_written_back},
        {"bytes_punched", st.bytes_punched},
        {"mirror_bytes_read", st.mirror_bytes_read},
        {"mirror_bytes_written", st.mirror_bytes_written},
        {"failovers", st.failovers},
        {"read_p50_us", st.read_latency.quantile_us(0.5)},
        {"read_p99_us", st.read_latency.quantile_us(0.99)},
        {"error", st.error},
    };
    if (f->json) {
      std::cout << j.dump() << std::endl;
    } else {
      std::cout << "served " << fst.reads << " reads and " << fst.writes << " writes (" << fst.errors << " errors)\n"
                << "fetched " << st.bytes_fetched << " bytes, wrote back " << st.bytes_written_back << " bytes, punched "
                << st.bytes_punched << " bytes, zero-filled " << st.bytes_zero_filled << " bytes\n"
                << "mirror: read " << st.mirror_bytes_read << " bytes, wrote " << st.mirror_bytes_written
                << " bytes; failovers " << st.failovers << '\n';
    }
    return exit_ok;
  };
}

}  // namespace memlend::cli
