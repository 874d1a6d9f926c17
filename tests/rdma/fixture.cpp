#include "tests/rdma/fixture.hpp"

#include <sys/stat.h>

#include <fstream>
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

DonorProcess::DonorProcess(const TempDir& dir, const std::string& name, int pool_mib)
    : secret_file(dir.path() + "/" + name + ".secret") {
  std::ofstream(secret_file) << "pool secret of " << name << '\n';
  ::chmod(secret_file.c_str(), 0600);
  child = std::make_unique<Child>(std::vector<std::string>{
      MEMLEND_BINARY, "donor", "--listen", "127.0.0.1:0", "--pool-mib", std::to_string(pool_mib), "--transport", "tcp",
      "--secret-file", secret_file});
  std::string line = child->wait_stdout("listening on ", std::chrono::seconds(20));
  if (line.empty()) throw std::runtime_error("donor did not start: " + child->err());
  address = line.substr(std::string("listening on ").size());
  address = address.substr(0, address.find(' '));
  secret = *rdma::load_secret_file(secret_file);
}

rdma::LeaseTarget DonorProcess::grant(std::uint64_t bytes) {
  auto c = rdma::DonorClient::connect(address, secret);
  if (!c) throw std::runtime_error(c.error().message);
  auto l = (*c)->grant(bytes);
  if (!l) throw std::runtime_error(l.error().message);
  client = std::move(*c);
  return *l;
}

rdma::PoolStats DonorProcess::stats() {
  auto c = rdma::DonorClient::connect(address, secret);
  if (!c) throw std::runtime_error(c.error().message);
  auto s = (*c)->stats();
  if (!s) throw std::runtime_error(s.error().message);
  return *s;
}

nlohmann::json last_json_line(const std::string& out) {
  auto end = out.find_last_not_of('\n');
  auto start = out.rfind('\n', end);
  return nlohmann::json::parse(out.substr(start == std::string::npos ? 0 : start + 1, end + 1));
}

}  // namespace memlend::test
