#include "core/stop_signals.hpp"
#include "cli/cli.hpp"
#include "cli/cluster_flags.hpp"
#include "cli/datapath_flags.hpp"
#include "rdma/donor.hpp"

#include <csignal>
#include <iostream>
#include <mutex>
#include <pthread.h>

namespace memlend::cli {

namespace {

struct DonorFlags {
  std::string listen;
  std::int64_t pool_mib = 0;
  std::string transport = "auto";
  std::string secret_file;
  bool insecure_test_bench = false;
  bool huge_pages = false;
};

}  // namespace

Action add_donor(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "donor",
      "Serve a donor pool until stopped (SIGINT or SIGTERM): memory other hosts\n"
      "reach through `memlend probe` or the controller's leases. Prints the address\n"
      "it listens on; a lease whose recipient disappears is reclaimed at once.");
  auto f = std::make_shared<DonorFlags>();
  cmd->add_option("--listen", f->listen, "Address to listen on, host:port (port 0: any free port)")->required();
  cmd->add_option("--pool-mib", f->pool_mib, "Memory to lend, in MiB")->required();
  cmd->add_option("--transport", f->transport,
                  "Data path: auto (verbs where an RDMA device exists, else tcp), verbs or tcp")
      ->type_name("{auto,verbs,tcp}");
  auto* secret = cmd->add_option("--secret-file", f->secret_file,
                                 "File whose contents authenticate lease requests (give probes the same file):\n"
                                 "16 bytes to 64 KiB, mode 0600. Required unless --insecure-test-bench")
                     ->type_name("FILE");
  cmd->add_flag("--insecure-test-bench", f->insecure_test_bench,
                "Serve without a secret (a fixed key everyone knows): anyone who can reach\n"
                "the address can take and read the whole pool. For a test bench only")
      ->excludes(secret);
  cmd->add_flag("--huge-pages", f->huge_pages, "Back the pool with huge pages (hugetlbfs must have them reserved)");
  return [f] {
    auto kind = rdma::parse_transport_kind(f->transport);
    if (!kind) return bad_input("--transport: \"" + f->transport + "\" is not one of auto, verbs, tcp");
    if (auto ep = rdma::parse_endpoint(f->listen); !ep) return bad_input("--listen: " + ep.error().message);
    if (f->pool_mib <= 0 || f->pool_mib > max_mib) return bad_input("--pool-mib: must be between 1 and " + std::to_string(max_mib));
    rdma::Secret secret{};  // the test bench's key, the one `memlend probe` uses without a file
    if (!f->secret_file.empty()) {
      auto text = read_secret(f->secret_file, "--secret-file");
      if (!text) return bad_input(text.error().message);
      secret = rdma::secret_from_text(*text);
    } else if (!f->insecure_test_bench) {
      return bad_input("--secret-file: required: without it anyone who can reach the address can use the pool "
                       "(--insecure-test-bench serves without one)");
    }

    auto pool = rdma::DonorPool::create(static_cast<std::uint64_t>(f->pool_mib) << 20, secret, {f->huge_pages});
    if (!pool) return failure(pool.error().message);

    // Signals are taken by sigwait below, so every thread must block them.
    StopSignalsBlocked blocked;
    sigset_t stop = stop_signals();

    std::mutex log_mu;
    rdma::ServerOptions o;
    o.listen = f->listen;
    o.transport = *kind;
    o.reclaim_orphans = true;
    o.log = [&log_mu](const std::string& line) {
      std::lock_guard<std::mutex> lock(log_mu);
      std::cerr << "memlend donor: " << line << std::endl;
    };
    o.on_orphan = [&o](std::uint64_t lease) { o.log("lease " + std::to_string(lease) + " reclaimed"); };
    auto server = rdma::DonorServer::start(*pool, o);
    if (!server) return failure(server.error().message);
    if (f->insecure_test_bench) o.log("warning: --insecure-test-bench: anyone who can reach this address can use the pool");
    std::cout << "listening on " << (*server)->address() << " (" << rdma::transport_name((*server)->transport())
              << "), pool " << f->pool_mib << " MiB" << std::endl;
    int sig = 0;
    sigwait(&stop, &sig);
    (*server)->stop();
    auto st = (*pool)->stats();
    o.log("stopped by signal " + std::to_string(sig) + "; " + std::to_string(st.leases) + " leases were live, " +
          std::to_string(st.resident_bytes) + " bytes resident, " + std::to_string(st.discarded_bytes) +
          " bytes discarded by recipients");
    return exit_ok;
  };
}

}  // namespace memlend::cli
