// The donor's server: a TCP listener for the control channel and the TCP data
// path, one thread per connection (a donor serves a handful of leases, each
// with two connections), and, with verbs, an rdma_cm listener beside it.
#include "rdma/donor.hpp"
#include "rdma/net.hpp"
#include "rdma/session.hpp"
#include "rdma/verbs.hpp"

#include <openssl/rand.h>

#include <cerrno>
#include <list>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace memlend::rdma {

namespace {

class Server final : public DonorServer, public std::enable_shared_from_this<Server> {
 public:
  Server(std::shared_ptr<DonorPool> pool, ServerOptions options, UniqueFd listener, TransportKind kind)
      : pool_(std::move(pool)), options_(std::move(options)), listener_(std::move(listener)), kind_(kind),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), address_(net::local_address(listener_.get())) {}

  ~Server() override { stop(); }

  void run(std::unique_ptr<VerbsListener> verbs) {
    verbs_ = std::move(verbs);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  std::string address() const override { return address_; }
  TransportKind transport() const override { return kind_; }

  void stop() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return;
      stopped_ = true;
      for (auto& c : conns_) ::shutdown(c.fd, SHUT_RDWR);
    }
    std::uint64_t one = 1;
    (void)!::write(wake_.get(), &one, sizeof one);
    if (acceptor_.joinable()) acceptor_.join();
    if (verbs_) verbs_->stop();
    std::list<Conn> conns;
    {
      std::lock_guard<std::mutex> lock(mu_);
      conns.swap(conns_);
    }
    for (auto& c : conns) c.thread.join();
  }

  // Called by the pool (from any thread) when a lease is revoked.
  void cut(std::uint64_t lease_id) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_.insert(lease_id);
      for (auto& c : conns_)
        if (c.leases.count(lease_id)) ::shutdown(c.fd, SHUT_RDWR);
    }
    if (verbs_) verbs_->cut(lease_id);
  }

  void attached(std::uint64_t lease) {
    std::lock_guard<std::mutex> lock(mu_);
    ++attach_count_[lease];
  }

  void detached(std::uint64_t lease) {
    bool orphan = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (--attach_count_[lease] > 0) return;
      attach_count_.erase(lease);
      orphan = !released_.count(lease) && !stopped_ && pool_->find(lease) != nullptr;
    }
    if (!orphan) return;
    if (options_.log) options_.log("lease " + std::to_string(lease) + ": every connection closed without a release");
    if (options_.reclaim_orphans) (void)pool_->revoke(lease);
    if (options_.on_orphan) options_.on_orphan(lease);
  }

 private:
  struct Conn {
    int fd;
    std::thread thread;
    std::set<std::uint64_t> leases;  // data connections' leases, for cut()
    bool done = false;
  };

  void accept_loop() {
    for (;;) {
      pollfd p[2] = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
      if (p[1].revents) return;
      reap();
      int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) continue;
      net::tune(fd);
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) {
        ::close(fd);
        return;
      }
      conns_.push_back(Conn{fd, {}, {}, false});
      auto it = std::prev(conns_.end());
      it->thread = std::thread([this, it] { serve(it); });
    }
  }

  void serve(std::list<Conn>::iterator conn) {
    ::pthread_setname_np(::pthread_self(), "memlend-serve");
    UniqueFd fd(conn->fd);
    wire::Hello hello;
    hello.verbs_port = verbs_ ? verbs_->port() : 0;
    RAND_bytes(hello.nonce.data(), static_cast<int>(hello.nonce.size()));
    std::uint8_t bytes[wire::hello_size];
    wire::encode(hello, bytes);
    DonorSession session(*pool_, hello.nonce);
    net::SocketChannel channel(fd.get(), options_.timeouts.io);
    iovec iov{bytes, sizeof bytes};
    std::set<std::uint64_t> counted;
    Status s = channel.write_all(&iov, 1);
    while (s) {
      s = net::await_readable(fd.get(), options_.timeouts.busy_poll);
      if (!s) break;
      s = session.serve_one(channel);
      for (auto lease : session.granted())
        if (counted.insert(lease).second) attached(lease);
      for (auto lease : session.attached()) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          conn->leases.insert(lease);
        }
        if (counted.insert(lease).second) attached(lease);
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      conn->leases.clear();
      conn->fd = -1;
      conn->done = true;
    }
    fd.reset();
    for (auto lease : counted) {
      if (session.released().count(lease)) {
        std::lock_guard<std::mutex> lock(mu_);
        released_.insert(lease);
      }
      detached(lease);
    }
  }

  // Joins the threads of connections that have ended.
  void reap() {
    std::list<Conn> finished;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = conns_.begin(); it != conns_.end();) {
        auto next = std::next(it);
        if (it->done) finished.splice(finished.end(), conns_, it);
        it = next;
      }
    }
    for (auto& c : finished) c.thread.join();
  }

  std::shared_ptr<DonorPool> pool_;
  ServerOptions options_;
  UniqueFd listener_;
  TransportKind kind_;
  UniqueFd wake_;
  std::string address_;
  std::unique_ptr<VerbsListener> verbs_;
  std::thread acceptor_;
  std::mutex mu_;
  bool stopped_ = false;
  std::list<Conn> conns_;
  std::map<std::uint64_t, int> attach_count_;
  std::set<std::uint64_t> released_;
};

}  // namespace

Expected<std::unique_ptr<DonorServer>> DonorServer::start(std::shared_ptr<DonorPool> pool, ServerOptions options) {
  auto choice = choose_transport(options.transport);
  if (!choice) return choice.error();
  if (options.log) options.log("data path: " + std::string(transport_name(choice->kind)) + " (" + choice->reason + ")");
  auto listener = net::listen_tcp(options.listen);
  if (!listener) return listener.error();
  auto server = std::make_shared<Server>(pool, options, std::move(*listener), choice->kind);
  std::weak_ptr<Server> weak = server;
  std::unique_ptr<VerbsListener> verbs;
  if (choice->kind == TransportKind::verbs) {
    VerbsHooks hooks{[weak](std::uint64_t l) { if (auto s = weak.lock()) s->attached(l); },
                     [weak](std::uint64_t l) { if (auto s = weak.lock()) s->detached(l); }};
    auto v = start_verbs_listener(pool, server->address(), options.timeouts, hooks);
    if (!v) return v.error();
    verbs = std::move(*v);
  }
  pool->on_revoke([weak](std::uint64_t lease) {
    if (auto s = weak.lock()) s->cut(lease);
  });
  server->run(std::move(verbs));
  // The caller owns the server through a unique_ptr whose deleter keeps the
  // shared state alive for the hooks' weak references.
  struct Handle final : DonorServer {
    std::shared_ptr<Server> s;
    explicit Handle(std::shared_ptr<Server> s) : s(std::move(s)) {}
    ~Handle() override { s->stop(); }
    std::string address() const override { return s->address(); }
    TransportKind transport() const override { return s->transport(); }
    void stop() override { s->stop(); }
  };
  return std::unique_ptr<DonorServer>(new Handle(std::move(server)));
}

}  // namespace memlend::rdma
