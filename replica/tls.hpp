// TLS for the store's traffic, Raft's and its clients' alike. dqlite 1.11 has
// none of its own, so a member given the cluster's TLS files (memlend run's
// --tls-*) keeps its dqlite node on a local abstract Unix socket and serves
// its address through a Front, as go-dqlite does for LXD: every connection
// must present a certificate the cluster's CA signed before one byte reaches
// dqlite. Its own connections out, Raft's (replica/node.cpp's connect
// function) and a client's (replica/client.cpp), are dialled over TLS the same
// way and carried to a local socket, because both dqlite and the client read
// and write a plain socket.
//
// What it keeps out: a process that reaches a member's port without a
// certificate of the cluster, which before could run SQL on the leader and
// speak Raft as a member. What it does not: a node of the cluster holds such
// a certificate and may write the store, as Raft's members trust each other;
// nor a process on a member's own host, which can reach the abstract socket.
// Only TLS 1.3, both sides authenticated; no host-name check, since members
// are named by address and certificates by host (identity/cluster_auth.hpp
// checks who an agent is).
#pragma once

#include "core/expected.hpp"
#include "rdma/common.hpp"

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace memlend::replica {

// The cluster's CA and this node's certificate and key, as a client's and a
// server's TLS context.
class Tls {
 public:
  // Errors name the file that is wrong and why.
  static Expected<std::shared_ptr<const Tls>> load(const std::string& ca_file, const std::string& cert_file,
                                                   const std::string& key_file);
  ~Tls();
  Tls(const Tls&) = delete;
  Tls& operator=(const Tls&) = delete;

  void* client_context() const { return client_; }  // SSL_CTX
  void* server_context() const { return server_; }

 private:
  Tls() = default;
  void* client_ = nullptr;
  void* server_ = nullptr;
};

// A thread that carries bytes both ways between a local socket and a TLS
// connection, until either side closes, fails or stop() is called. It owns
// both sockets and closes them when it ends, so the local socket's other end
// reads end-of-file.
class Pump {
 public:
  ~Pump();  // stops and joins
  Pump(const Pump&) = delete;
  Pump& operator=(const Pump&) = delete;
  void stop();
  bool done() const { return done_.load(); }

 private:
  friend struct PumpAccess;
  Pump();
  rdma::UniqueFd stop_fd_;  // an eventfd: readable once stop() was called
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Pumps that end in their own time, joined as they end and all stopped at
// last. Safe from any thread.
class Pumps {
 public:
  ~Pumps() { clear(); }
  void add(std::unique_ptr<Pump> pump);
  void clear();
  std::size_t running();

 private:
  void reap();  // with mutex_ held
  std::mutex mutex_;
  std::vector<std::unique_ptr<Pump>> pumps_;
};

// A TLS connection to `address` (host:port) whose peer proved a certificate
// of the cluster, made before `deadline`, as a local socket (`local`) and
// the pump that carries it.
struct Dialed {
  rdma::UniqueFd local;
  std::unique_ptr<Pump> pump;
};
Expected<Dialed> dial(const Tls& tls, const std::string& address, rdma::Clock::time_point deadline);

// What a front refused, as lines for the log: the first at once, then at
// most one every `quiet`, which counts those held back since the last. A
// misconfigured member shows in the log; a flood of strangers or a port
// scanner makes a few lines, not a full disk.
class RefusalLog {
 public:
  RefusalLog(std::string address, rdma::Millis quiet) : address_(std::move(address)), quiet_(quiet) {}
  // The line to log for this refusal, when one is due. Safe from any thread.
  std::optional<std::string> note(const std::string& peer, const std::string& why, rdma::Clock::time_point now);

 private:
  std::mutex mutex_;
  std::string address_;
  rdma::Millis quiet_;
  std::optional<rdma::Clock::time_point> last_;
  std::size_t held_ = 0;
};

// Listens on `address` (host:port) and carries each connection that proves a
// certificate of the cluster within `handshake` to `target`, an abstract Unix
// socket ("@name"). At most `max_connections` at once: more are closed at
// once, so a flood of idle handshakes cannot take every thread. What it
// refuses goes to the log (core/log.hpp) at warn, through a RefusalLog.
class Front {
 public:
  struct Options {
    rdma::Millis handshake{5000};
    std::size_t max_connections = 256;
    rdma::Millis refusals_quiet{10000};
  };
  static Expected<std::unique_ptr<Front>> start(std::shared_ptr<const Tls> tls, const std::string& address,
                                                std::string target, Options options);
  static Expected<std::unique_ptr<Front>> start(std::shared_ptr<const Tls> tls, const std::string& address,
                                                std::string target) {
    return start(std::move(tls), address, std::move(target), Options{});
  }
  ~Front();  // stops accepting, then every connection it carries
  Front(const Front&) = delete;
  Front& operator=(const Front&) = delete;
  std::size_t connections() { return pumps_.running(); }

 private:
  Front() = default;
  void accept_loop();
  void refused(const std::string& peer, const std::string& why);
  std::shared_ptr<const Tls> tls_;
  std::string target_;
  Options options_;
  rdma::UniqueFd listener_;
  rdma::UniqueFd stop_fd_;
  std::unique_ptr<RefusalLog> refusals_;  // before pumps_: their threads use it
  Pumps pumps_;
  std::thread acceptor_;
};

}  // namespace memlend::replica
