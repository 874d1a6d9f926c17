// What the replicated store's benchmarks share: three dqlite nodes, each in
// a process of its own (forked before the benchmark starts threads), so that
// one can be killed as a node dies.
#pragma once

#include "replica/client.hpp"
#include "replica/node.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace memlend::bench {

using namespace memlend::replica;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The program's name, for its messages.
inline const char* program = "bench";

// The nodes' processes, killed by die() so that none outlives the benchmark.
inline std::vector<pid_t>& node_pids() {
  static std::vector<pid_t> pids;
  return pids;
}

[[noreturn]] inline void die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program, what.c_str());
  for (pid_t p : node_pids()) ::kill(p, SIGKILL);
  std::exit(1);
}

template <class T>
T must(memlend::Expected<T> e, const char* what) {
  if (!e) die(std::string(what) + ": " + e.error().message);
  return std::move(*e);
}
inline void must(memlend::Expected<void> e, const char* what) {
  if (!e) die(std::string(what) + ": " + e.error().message);
}

inline double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

inline std::uint16_t free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) die("no free loopback port");
  socklen_t len = sizeof sa;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(s);
  return ntohs(sa.sin_port);
}

// A node in a child process, forked while this process has no threads of its
// own; it says on a pipe that it serves, and serves until killed.
class NodeProcess {
 public:
  NodeProcess(const NodeConfig& config) : config_(config) {}
  ~NodeProcess() { kill(SIGTERM); }
  const std::string& address() const { return config_.address; }
  bool alive() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }

  void start() {
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) die("pipe");
    pid_ = ::fork();
    if (pid_ < 0) die("fork");
    if (pid_ == 0) {
      sigset_t stop;
      sigemptyset(&stop);
      sigaddset(&stop, SIGTERM);
      pthread_sigmask(SIG_BLOCK, &stop, nullptr);
      auto node = Node::start(config_);
      if (!node) {
        std::fprintf(stderr, "%s: node %llu: %s\n", program, static_cast<unsigned long long>(config_.id),
                     node.error().message.c_str());
        ::_exit(1);
      }
      (void)!::write(ready[1], "r", 1);
      int signal = 0;
      sigwait(&stop, &signal);
      ::_exit((*node)->stop() ? 0 : 1);
    }
    ::close(ready[1]);
    node_pids().push_back(pid_);
    pollfd p{ready[0], POLLIN, 0};
    char c = 0;
    bool ok = ::poll(&p, 1, 30000) == 1 && ::read(ready[0], &c, 1) == 1;
    ::close(ready[0]);
    if (!ok) die("node " + std::to_string(config_.id) + " did not start");
  }

  void kill(int signal) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    ::waitpid(pid_, nullptr, 0);
    auto& pids = node_pids();
    pids.erase(std::remove(pids.begin(), pids.end(), pid_), pids.end());
    pid_ = -1;
  }

 private:
  NodeConfig config_;
  pid_t pid_ = -1;
};

// Three voters on loopback, their data under `root`; node 1 bootstraps and
// adds the others.
// With `tls`, the nodes speak it as memlend's members do.
inline std::vector<std::unique_ptr<NodeProcess>> start_cluster(const std::string& root,
                                                              std::optional<milliseconds> latency,
                                                              std::shared_ptr<const Tls> tls = nullptr) {
  std::vector<std::unique_ptr<NodeProcess>> nodes;
  for (std::uint64_t id = 1; id <= 3; ++id) {
    NodeConfig c;
    c.id = id;
    c.address = "127.0.0.1:" + std::to_string(free_port());
    c.data_dir = root + "/node" + std::to_string(id);
    c.network_latency = latency;
    c.tls = tls;
    nodes.push_back(std::make_unique<NodeProcess>(c));
    nodes.back()->start();
  }
  ClientOptions options;
  options.tls = tls;
  Client leader =
      must(connect_leader({nodes[0]->address()}, "", milliseconds(60000), options), "bootstrap leader");
  for (std::uint64_t id = 2; id <= 3; ++id) {
    must(leader.add(id, nodes[id - 1]->address()), "add");
    must(leader.assign(id, Role::voter), "assign");
  }
  return nodes;
}

}  // namespace memlend::bench
