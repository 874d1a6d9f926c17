// A stand-in for a controller's lease actor at the moment of a grant, run in
// one of the test's namespaces: it grants from a host's pool over the data
// path, as the controller does, and records nothing anywhere, as a controller
// killed right after the grant records nothing. It also reads a pool's stats.
//
//   pool_tool SECRET_FILE HOST ADDR grant MIB   prints "granted ID"
//   pool_tool SECRET_FILE HOST ADDR stats       prints "granted_bytes B"
#include "actors/data_plane.hpp"
#include "rdma/donor.hpp"

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

int main(int argc, char** argv) {
  if (argc < 5) {
    std::cerr << "usage: pool_tool SECRET_FILE HOST ADDR grant MIB | stats\n";
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  std::string secret = text.str();
  // As memlend reads --cluster-secret-file.
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  auto client = memlend::rdma::DonorClient::connect(argv[3], memlend::derive_pool_secret(secret, argv[2]));
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
    std::cout << "granted " << g->lease_id << std::endl;
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
