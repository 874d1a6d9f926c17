// The donor's server: a TCP listener for the control channel and the TCP data
// path, one thread per connection (a donor serves a handful of leases, each
// with two connections), and, with verbs, an rdma_cm listener beside it.
// Threads are cheap for the few clients that hold the secret; everyone else
// is bounded by ServerOptions::hello_timeout and max_unauthenticated, and the
// acceptor never spins when the process runs out of descriptors.
#include "rdma/donor.hpp"
#include "rdma/net.hpp"
#include "rdma/session.hpp"
#include "rdma/verbs.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <list>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <system_error>
#include <thread>
#include <unistd.h>

namespace memlend::rdma {

namespace {

class Server final : public DonorServer, public std::enable_shared_from_this<Server> {
 public:
  Server(std::shared_ptr<DonorPool> pool, ServerOptions options, UniqueFd listener, TransportKind kind)
      : pool_(std::move(pool)), options_(std::move(options)), listener_(std::move(listener)), kind_(kind),
        wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), freed_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
        spare_(open_spare()), address_(net::local_address(listener_.get())) {}

  ~Server() override { stop(); }

  void run(std::unique_ptr<VerbsListener> verbs) {
    verbs_ = std::move(verbs);
    acceptor_ = std::thread([this] { accept_loop(); });
  }

  std::string address() const override { return address_; }
  TransportKind transport() const override { return kind_; }

  ServerStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    ServerStats s = stats_;
    s.unauthenticated = unauthenticated_locked();
    return s;
  }

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
    bool authenticated = false;
    bool evicted = false;
  };

  // A descriptor held in reserve, so that at the limit the acceptor can still
  // take a waiting connection off the queue to close it.
  static UniqueFd open_spare() { return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

  static void drain(int eventfd) {
    std::uint64_t n;
    (void)!::read(eventfd, &n, sizeof n);
  }

  void accept_loop() {
    for (;;) {
      pollfd p[3] = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}, {freed_.get(), POLLIN, 0}};
      if (::poll(p, 3, -1) < 0 && errno != EINTR) return;
      if (p[1].revents) return;
      if (p[2].revents) drain(freed_.get());
      reap();
      if (p[0].revents) accept_one();
    }
  }

  void accept_one() {
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int err = errno;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.accept_calls;
    }
    if (fd < 0) {
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) out_of_descriptors();
      return;  // EAGAIN, ECONNABORTED (the peer gave up while queued), EINTR: nothing to do
    }
    net::tune(fd);
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) {
      ::close(fd);
      return;
    }
    ++stats_.accepted;
    if (unauthenticated_locked() >= options_.max_unauthenticated) evict_oldest_locked();
    conns_.push_back(Conn{fd, {}, {}});
    auto it = std::prev(conns_.end());
    try {
      it->thread = std::thread([this, it] { serve(it); });
    } catch (const std::system_error&) {
      // No thread to be had (the process's limit): the peer is told by the
      // close, and the donor goes on serving those it has.
      ::close(fd);
      conns_.erase(it);
      ++stats_.shed;
    }
  }

  // At the descriptor limit the listener stays readable, and an acceptor
  // that only retried would spin a core while serving nobody. Room is made
  // by dropping the oldest unauthenticated connection; when every connection
  // is authenticated, the first one queued is taken on the spare descriptor
  // and closed, so that it fails now rather than at its timeout. Either way
  // the acceptor then waits for a descriptor to be freed (at most 100 ms)
  // before it accepts again.
  void out_of_descriptors() {
    drain(freed_.get());
    bool evicted = false;
    std::uint64_t times = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      times = ++stats_.out_of_fds;
      evicted = evict_oldest_locked();
    }
    if (!evicted && spare_) {
      spare_.reset();
      int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.accept_calls;
      if (fd >= 0) {
        ::close(fd);
        ++stats_.shed;
      }
    }
    if (!spare_) spare_ = open_spare();
    // Once per doubling: a flood at the limit must not flood the log too.
    if (options_.log && (times & (times - 1)) == 0)
      options_.log("out of file descriptors (" + std::to_string(times) + " times): " +
                   (evicted ? "dropped the oldest unauthenticated connection" : "refused a connection"));
    pollfd p[2] = {{wake_.get(), POLLIN, 0}, {freed_.get(), POLLIN, 0}};
    (void)::poll(p, 2, 100);
  }

  std::uint64_t unauthenticated_locked() const {
    std::uint64_t n = 0;
    for (const auto& c : conns_) n += !c.authenticated && !c.evicted && !c.done;
    return n;
  }

  // Shuts the oldest unauthenticated connection down; its thread closes it.
  bool evict_oldest_locked() {
    for (auto& c : conns_) {
      if (c.authenticated || c.evicted || c.done || c.fd < 0) continue;
      ::shutdown(c.fd, SHUT_RDWR);
      c.evicted = true;
      ++stats_.evicted;
      return true;
    }
    return false;
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
    auto hello_deadline = Clock::now() + options_.hello_timeout;
    bool authenticated = false;
    Status s = channel.write_all(&iov, 1);
    while (s) {
      if (authenticated) {
        s = net::await_readable(fd.get(), options_.timeouts.busy_poll);
        if (s) s = session.serve_one(channel);
      } else {
        s = net::await_readable(fd.get(), {}, hello_deadline);
        // The whole first request must be in by the deadline: sending it a
        // byte at a time buys no time.
        auto left = std::chrono::ceil<Millis>(hello_deadline - Clock::now());
        net::SocketChannel first(fd.get(), std::max(left, Millis(0)));
        if (s) s = session.serve_one(first);
        // serve_one succeeds only for a request whose tag checked out.
        if (s) {
          authenticated = true;
          std::lock_guard<std::mutex> lock(mu_);
          conn->authenticated = true;
        }
      }
      if (!s) break;
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
      if (!authenticated && !conn->evicted && Clock::now() >= hello_deadline) ++stats_.hello_timeouts;
      conn->leases.clear();
      conn->fd = -1;
      conn->done = true;
    }
    fd.reset();
    std::uint64_t one = 1;
    (void)!::write(freed_.get(), &one, sizeof one);
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
  UniqueFd freed_;  // written by a connection's thread once its descriptor is closed
  UniqueFd spare_;  // the acceptor's only
  std::string address_;
  std::unique_ptr<VerbsListener> verbs_;
  std::thread acceptor_;
  mutable std::mutex mu_;
  bool stopped_ = false;
  ServerStats stats_;
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
    ServerStats stats() const override { return s->stats(); }
    void stop() override { s->stop(); }
  };
  return std::unique_ptr<DonorServer>(new Handle(std::move(server)));
}

}  // namespace memlend::rdma
