// A stand-in for a controller's lease actor at the moment of a grant, run in
// one of the test's namespaces: it grants from a host's pool over the data
// path, as the controller does, and records nothing anywhere, as a controller
// killed right after the grant records nothing. It also reads a pool's stats.
// Only the holder of the host's own key can: the pool's secret derives from it.
//
//   pool_tool CERT KEY ADDR grant MIB   prints "granted ID"
//   pool_tool CERT KEY ADDR stats       prints "granted_bytes B"
#include "identity/cluster_auth.hpp"
#include "rdma/donor.hpp"

#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: pool_tool CERT KEY ADDR grant MIB | stats\n";
    return 2;
  }
  auto identity = memlend::NodeIdentity::load(argv[1], argv[2]);
  if (!identity) {
    std::cerr << "pool_tool: " << identity.error().message << '\n';
    return 2;
  }
  auto client = memlend::rdma::DonorClient::connect(argv[3], identity->pool_secret());
  if (!client) {
    std::cerr << "pool_tool: " << client.error().message << '\n';
    return 1;
  }
  std::string op = argv[4];
  if (op == "grant" && argc == 6) {
    auto g = (*client)->grant(std::stoull(argv[5]) * 1024 * 1024);
    if (!g) {
      std::cerr << "pool_tool: " << g.error().message << '\n';
      return 1;
    }
    std::cout << "granted " << g->where.id << std::endl;
    return 0;
  }
  if (op == "stats") {
    auto s = (*client)->stats();
    if (!s) {
      std::cerr << "pool_tool: " << s.error().message << '\n';
      return 1;
    }
    std::cout << "granted_bytes " << s->granted_bytes << std::endl;
    return 0;
  }
  std::cerr << "pool_tool: unknown operation " << op << '\n';
  return 2;
}
