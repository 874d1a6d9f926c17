#include "tests/rdma/fixture.hpp"

#include <stdexcept>

namespace memlend::test {

TempDir::TempDir(const std::string& tag) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern = std::string(tmp ? tmp : "/tmp") + "/memlend-" + tag + "-XXXXXX";
  if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

LocalDonor::LocalDonor(std::uint64_t pool_bytes, rdma::ServerOptions options) : secret(rdma::random_secret()) {
  auto p = rdma::DonorPool::create(pool_bytes, secret);
  if (!p) throw std::runtime_error(p.error().message);
  pool = *p;
  options.transport = rdma::TransportKind::tcp;
  auto s = rdma::DonorServer::start(pool, options);
  if (!s) throw std::runtime_error(s.error().message);
  server = std::move(*s);
}

rdma::LeaseTarget LocalDonor::lease(std::uint64_t bytes) {
  auto g = pool->grant(bytes);
  if (!g) throw std::runtime_error(g.error().message);
  return rdma::LeaseTarget{{server->address(), g->id, g->epoch, {}}, g->bytes, g->secret};
}

rdma::DonorLink LocalDonor::link(const rdma::LeaseTarget& lease, rdma::Timeouts t) {
  auto l = rdma::connect_link(lease, rdma::TransportKind::tcp, t);
  if (!l) throw std::runtime_error(l.error().message);
  return std::move(*l);
}

}  // namespace memlend::test
