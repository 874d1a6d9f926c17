// A dqlite node in a process of its own, for the tests to kill -9:
//   replica_node_host ID HOST:PORT DATA_DIR [LATENCY_MS [CA CERT KEY]]
// With the TLS files, its address speaks TLS as a memlend member's does.
// Prints "ready" once the node serves, and stops it cleanly on SIGTERM.
#include "replica/node.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  if (argc < 4 || argc > 8 || argc == 6 || argc == 7) {
    std::fprintf(stderr, "usage: replica_node_host ID HOST:PORT DATA_DIR [LATENCY_MS [CA CERT KEY]]\n");
    return 2;
  }
  // Blocked before the node's threads start, so that they inherit the mask
  // and sigwait below is the one place these signals arrive.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  memlend::replica::NodeConfig config;
  config.id = std::strtoull(argv[1], nullptr, 10);
  config.address = argv[2];
  config.data_dir = argv[3];
  if (argc >= 5) config.network_latency = std::chrono::milliseconds(std::atoi(argv[4]));
  if (argc == 8) {
    auto tls = memlend::replica::Tls::load(argv[5], argv[6], argv[7]);
    if (!tls) {
      std::fprintf(stderr, "replica_node_host: %s\n", tls.error().message.c_str());
      return 2;
    }
    config.tls = *tls;
  }
  auto node = memlend::replica::Node::start(config);
  if (!node) {
    std::fprintf(stderr, "replica_node_host: %s\n", node.error().message.c_str());
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  int signal = 0;
  sigwait(&stop, &signal);
  if (auto stopped = (*node)->stop(); !stopped) {
    std::fprintf(stderr, "replica_node_host: %s\n", stopped.error().message.c_str());
    return 1;
  }
  return 0;
}
