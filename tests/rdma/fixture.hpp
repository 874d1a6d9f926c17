// Shared pieces of the data path's tests: an in-process donor, temporary
// directories that clean up after themselves, and the test pattern.
#pragma once

#include "rdma/donor.hpp"
#include "rdma/region.hpp"
#include "tests/support/child.hpp"
#include "tests/support/pattern.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace memlend::test {

class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A donor pool and server in this process, on a loopback port.
struct LocalDonor {
  explicit LocalDonor(std::uint64_t pool_bytes, rdma::ServerOptions options = {});
  rdma::LeaseTarget lease(std::uint64_t bytes);
  rdma::DonorLink link(const rdma::LeaseTarget& lease, rdma::Timeouts t = {});

  rdma::Secret secret;
  std::shared_ptr<rdma::DonorPool> pool;
  std::unique_ptr<rdma::DonorServer> server;
};

// A `memlend donor` child with its own secret file, on a loopback port.
struct DonorProcess {
  DonorProcess(const TempDir& dir, const std::string& name, int pool_mib = 64);
  rdma::LeaseTarget grant(std::uint64_t bytes);
  // The pool's figures, as any client asks for them.
  rdma::PoolStats stats();

  std::string secret_file;
  std::string address;
  rdma::Secret secret{};
  std::unique_ptr<Child> child;
  std::unique_ptr<rdma::DonorClient> client;  // keeps granted leases from looking orphaned
};

// The last line of a command's stdout, as JSON (what --json printed).
nlohmann::json last_json_line(const std::string& out);

}  // namespace memlend::test
