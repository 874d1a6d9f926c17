#include "replica/tls.hpp"

#include "core/log.hpp"
#include "core/text.hpp"
#include "rdma/net.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <functional>
#include <optional>
#include <utility>

namespace memlend::replica {

namespace {

using rdma::Clock;
using rdma::Status;
using rdma::UniqueFd;
namespace net = rdma::net;

SSL_CTX* ctx_of(void* p) { return static_cast<SSL_CTX*>(p); }

// OpenSSL's reason for the last failure on this thread, and the queue emptied.
std::string ssl_reason() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    if (!out.empty()) continue;  // the first is the cause; drain the rest
    const char* r = ERR_reason_error_string(e);
    out = r ? r : "error " + std::to_string(e);
  }
  return out.empty() ? "unknown TLS error" : out;
}

struct SslFree {
  void operator()(SSL* s) const { SSL_free(s); }
};
using UniqueSsl = std::unique_ptr<SSL, SslFree>;

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<rdma::Millis>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

// Waits for `events` on `fd` until the deadline or until `stop_fd` (-1: none)
// is readable.
Status wait_for(int fd, short events, Clock::time_point deadline, int stop_fd) {
  for (;;) {
    pollfd p[2] = {{fd, events, 0}, {stop_fd, POLLIN, 0}};
    int n = ::poll(p, stop_fd >= 0 ? 2 : 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error{std::string("poll: ") + std::strerror(errno)};
    if (n == 0) return Error{"timed out", ErrorCode::timed_out};
    if (stop_fd >= 0 && p[1].revents) return Error{"stopped"};
    return {};
  }
}

// OpenSSL writes to its socket with write(), which raises SIGPIPE when the
// peer has gone; a process that takes it by default dies of a peer's
// disconnection. A client's handshake runs on the caller's thread, so
// SIGPIPE is blocked around it and any it raised taken back (as curl does);
// a pump's thread blocks every signal for its life, leaving them to the
// threads that wait for them.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
  }
  ~SigpipeBlocked() {
    if (!sigismember(&old_, SIGPIPE)) {
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      timespec none{0, 0};
      while (sigtimedwait(&pipe, nullptr, &none) == SIGPIPE) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlocked(const SigpipeBlocked&) = delete;
  SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

 private:
  sigset_t old_;
};

// The TLS handshake on a non-blocking socket, as client or server.
Status handshake(SSL* ssl, int fd, bool server, Clock::time_point deadline, int stop_fd) {
  for (;;) {
    ERR_clear_error();
    int r = server ? SSL_accept(ssl) : SSL_connect(ssl);
    if (r == 1) return {};
    int e = SSL_get_error(ssl, r);
    short events = 0;
    if (e == SSL_ERROR_WANT_READ) events = POLLIN;
    else if (e == SSL_ERROR_WANT_WRITE) events = POLLOUT;
    else {
      long verify = SSL_get_verify_result(ssl);
      std::string why = verify != X509_V_OK ? std::string("certificate: ") + X509_verify_cert_error_string(verify)
                        : e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN ? "the peer closed the connection"
                                                                                : ssl_reason();
      ERR_clear_error();
      return Error{"TLS handshake failed: " + why};
    }
    if (auto ready = wait_for(fd, events, deadline, stop_fd); !ready)
      return Error{"TLS handshake " + ready.error().message, ready.error().code};
  }
}

// Carries bytes between `plain` and the TLS connection until either ends or
// `stop_fd` is readable. A buffer is refilled only once it is empty, so that
// an SSL_write that must be repeated is repeated with the same bytes.
void carry(SSL* ssl, int tls_fd, int plain_fd, int stop_fd) {
  constexpr std::size_t size = 64 << 10;
  std::vector<char> up(size), down(size);  // plain to TLS, TLS to plain
  std::size_t up_at = 0, up_end = 0, down_at = 0, down_end = 0;
  bool plain_eof = false, tls_eof = false;
  for (;;) {
    bool moved = false;
    short tls_events = 0, plain_events = 0;
    if (!plain_eof && up_at == up_end) {
      ssize_t n = ::recv(plain_fd, up.data(), size, 0);
      if (n > 0) up_at = 0, up_end = static_cast<std::size_t>(n), moved = true;
      else if (n == 0) plain_eof = moved = true;
      else if (errno == EAGAIN || errno == EWOULDBLOCK) plain_events |= POLLIN;
      else if (errno != EINTR) return;
    }
    if (up_at < up_end) {
      ERR_clear_error();
      int n = SSL_write(ssl, up.data() + up_at, static_cast<int>(up_end - up_at));
      if (n > 0) {
        up_at += static_cast<std::size_t>(n);
        moved = true;
      } else {
        int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_READ) tls_events |= POLLIN;
        else if (e == SSL_ERROR_WANT_WRITE) tls_events |= POLLOUT;
        else return;
      }
    }
    if (!tls_eof && down_at == down_end) {
      ERR_clear_error();
      int n = SSL_read(ssl, down.data(), static_cast<int>(size));
      if (n > 0) {
        down_at = 0, down_end = static_cast<std::size_t>(n), moved = true;
      } else {
        int e = SSL_get_error(ssl, n);
        if (e == SSL_ERROR_WANT_READ) tls_events |= POLLIN;
        else if (e == SSL_ERROR_WANT_WRITE) tls_events |= POLLOUT;
        else tls_eof = moved = true;  // closed, cleanly or not: either way it is over
      }
    }
    if (down_at < down_end) {
      ssize_t n = ::send(plain_fd, down.data() + down_at, down_end - down_at, MSG_NOSIGNAL);
      if (n > 0) down_at += static_cast<std::size_t>(n), moved = true;
      else if (errno == EAGAIN || errno == EWOULDBLOCK) plain_events |= POLLOUT;
      else if (errno != EINTR) return;
    }
    if (plain_eof && up_at == up_end) {
      ERR_clear_error();
      SSL_shutdown(ssl);  // a close_notify, best effort: the local side is done
      return;
    }
    if (tls_eof && down_at == down_end) return;
    if (moved) continue;
    // A side with nothing to wait for is left out: its hang-up would wake the
    // poll again and again while the other side is what holds it.
    pollfd p[3] = {{stop_fd, POLLIN, 0},
                   {tls_events ? tls_fd : -1, tls_events, 0},
                   {plain_events ? plain_fd : -1, plain_events, 0}};
    int n = ::poll(p, 3, -1);
    if (n < 0 && errno != EINTR) return;
    if (n > 0 && p[0].revents) return;
  }
}

Expected<UniqueFd> connect_abstract(const std::string& target) {
  if (target.size() < 2 || target[0] != '@' || target.size() > sizeof(sockaddr_un::sun_path))
    return Error{"\"" + one_line(target) + "\" is not an abstract Unix socket (@name)", ErrorCode::invalid_input};
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Error{std::string("socket: ") + std::strerror(errno), ErrorCode::io};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path + 1, target.data() + 1, target.size() - 1);  // sun_path[0] stays '\0'
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + target.size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0)
    return Error{"connect " + one_line(target) + ": " + std::strerror(errno), ErrorCode::unavailable};
  return fd;
}

Expected<void*> make_context(bool server, const std::string& ca, const std::string& cert, const std::string& key) {
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!ctx) return Error{"TLS: " + ssl_reason(), ErrorCode::failed};
  auto fail = [ctx](const std::string& what) {
    std::string why = ssl_reason();
    SSL_CTX_free(ctx);
    return Error{what + ": " + why, ErrorCode::invalid_input};
  };
  ERR_clear_error();
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (server) SSL_CTX_set_num_tickets(ctx, 0);  // nobody resumes: each dial is a new handshake
  if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1) return fail("--tls-ca " + one_line(ca));
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) return fail("--tls-cert " + one_line(cert));
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) return fail("--tls-key " + one_line(key));
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return Error{"--tls-key " + one_line(key) + " is not --tls-cert's key", ErrorCode::invalid_input};
  }
  if (SSL_CTX_check_private_key(ctx) != 1) return fail("--tls-key " + one_line(key) + " is not --tls-cert's key");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  return static_cast<void*>(ctx);
}

UniqueFd event_fd() { return UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)); }

void raise_event(const UniqueFd& fd) {
  std::uint64_t one = 1;
  (void)!::write(fd.get(), &one, sizeof one);
}

}  // namespace

struct PumpAccess {
  // Runs `prepare` (a handshake, a connect; it returns the sockets to carry
  // between, or nothing) and then carries, on the pump's own thread.
  using Prepared = std::pair<UniqueSsl, std::pair<UniqueFd, UniqueFd>>;  // ssl, {tls fd, plain fd}
  static std::unique_ptr<Pump> start(std::function<std::optional<Prepared>(int stop_fd)> prepare) {
    std::unique_ptr<Pump> p(new Pump());
    Pump* raw = p.get();
    raw->thread_ = std::thread([raw, prepare = std::move(prepare)] {
      sigset_t all;
      sigfillset(&all);
      pthread_sigmask(SIG_BLOCK, &all, nullptr);
      if (auto ready = prepare(raw->stop_fd_.get()))
        carry(ready->first.get(), ready->second.first.get(), ready->second.second.get(), raw->stop_fd_.get());
      raw->done_ = true;
    });
    return p;
  }
};

Expected<std::shared_ptr<const Tls>> Tls::load(const std::string& ca_file, const std::string& cert_file,
                                               const std::string& key_file) {
  std::shared_ptr<Tls> tls(new Tls());
  auto client = make_context(false, ca_file, cert_file, key_file);
  if (!client) return client.error();
  tls->client_ = *client;
  auto server = make_context(true, ca_file, cert_file, key_file);
  if (!server) return server.error();
  tls->server_ = *server;
  return std::shared_ptr<const Tls>(std::move(tls));
}

Tls::~Tls() {
  SSL_CTX_free(ctx_of(client_));
  SSL_CTX_free(ctx_of(server_));
}

Pump::Pump() : stop_fd_(event_fd()) {}

Pump::~Pump() {
  stop();
  if (thread_.joinable()) thread_.join();
}

void Pump::stop() { raise_event(stop_fd_); }

void Pumps::reap() {
  pumps_.erase(std::remove_if(pumps_.begin(), pumps_.end(), [](const std::unique_ptr<Pump>& p) { return p->done(); }),
               pumps_.end());
}

void Pumps::add(std::unique_ptr<Pump> pump) {
  std::lock_guard<std::mutex> lock(mutex_);
  reap();
  pumps_.push_back(std::move(pump));
}

void Pumps::clear() {
  std::vector<std::unique_ptr<Pump>> all;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    all.swap(pumps_);
  }
  for (auto& p : all) p->stop();
  all.clear();  // joins each
}

std::size_t Pumps::running() {
  std::lock_guard<std::mutex> lock(mutex_);
  reap();
  return pumps_.size();
}

Expected<Dialed> dial(const Tls& tls, const std::string& address, Clock::time_point deadline) {
  auto fd = net::connect_tcp(address, deadline);
  if (!fd) return Error{fd.error().message, Clock::now() >= deadline ? ErrorCode::timed_out : ErrorCode::unavailable};
  UniqueSsl ssl(SSL_new(ctx_of(tls.client_context())));
  if (!ssl || SSL_set_fd(ssl.get(), fd->get()) != 1) return Error{"TLS: " + ssl_reason(), ErrorCode::failed};
  SigpipeBlocked quiet;
  if (auto shaken = handshake(ssl.get(), fd->get(), false, deadline, -1); !shaken)
    return Error{one_line(address) + ": " + shaken.error().message,
                 Clock::now() >= deadline ? ErrorCode::timed_out : ErrorCode::refused};
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0)
    return Error{std::string("socketpair: ") + std::strerror(errno), ErrorCode::io};
  Dialed d;
  d.local = UniqueFd(pair[0]);
  auto carried =
      std::make_shared<PumpAccess::Prepared>(std::move(ssl), std::make_pair(std::move(*fd), UniqueFd(pair[1])));
  d.pump = PumpAccess::start([carried](int) { return std::optional<PumpAccess::Prepared>(std::move(*carried)); });
  return d;
}

std::optional<std::string> RefusalLog::note(const std::string& peer, const std::string& why,
                                            Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (last_ && now - *last_ < quiet_) {
    ++held_;
    return std::nullopt;
  }
  std::string line = "store: refused a connection from " + peer + " to " + address_ + ": " + one_line(why);
  if (held_ > 0) line += " (and " + std::to_string(held_) + " more refused since the last such line)";
  last_ = now;
  held_ = 0;
  return line;
}

Expected<std::unique_ptr<Front>> Front::start(std::shared_ptr<const Tls> tls, const std::string& address,
                                              std::string target, Options options) {
  auto listener = net::listen_tcp(address);
  if (!listener) return Error{listener.error().message, ErrorCode::unavailable};
  std::unique_ptr<Front> f(new Front());
  f->tls_ = std::move(tls);
  f->target_ = std::move(target);
  f->options_ = options;
  f->refusals_ = std::make_unique<RefusalLog>(address, options.refusals_quiet);
  f->listener_ = std::move(*listener);
  f->stop_fd_ = event_fd();
  if (!f->stop_fd_) return Error{std::string("eventfd: ") + std::strerror(errno), ErrorCode::io};
  f->acceptor_ = std::thread([front = f.get()] { front->accept_loop(); });
  return f;
}

Front::~Front() {
  raise_event(stop_fd_);
  if (acceptor_.joinable()) acceptor_.join();
  pumps_.clear();
}

void Front::accept_loop() {
  for (;;) {
    pollfd p[2] = {{listener_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    int n = ::poll(p, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || p[1].revents) return;
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      // Out of descriptors or memory, the listener stays readable: a pause,
      // not a spin, until some connection ends. Else the peer left first.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        pollfd stop{stop_fd_.get(), POLLIN, 0};
        if (::poll(&stop, 1, 100) > 0) return;
      }
      continue;
    }
    std::string peer = net::peer_address(fd.get());
    if (pumps_.running() >= options_.max_connections) {  // closed as it goes
      refused(peer, std::to_string(options_.max_connections) + " connections are open already");
      continue;
    }
    net::tune(fd.get());
    UniqueSsl ssl(SSL_new(ctx_of(tls_->server_context())));
    if (!ssl || SSL_set_fd(ssl.get(), fd.get()) != 1) continue;
    auto deadline = Clock::now() + options_.handshake;
    auto taken = std::make_shared<PumpAccess::Prepared>(std::move(ssl), std::make_pair(std::move(fd), UniqueFd()));
    pumps_.add(PumpAccess::start(
        [this, taken, deadline, peer](int stop_fd) -> std::optional<PumpAccess::Prepared> {
          if (auto shaken = handshake(taken->first.get(), taken->second.first.get(), true, deadline, stop_fd);
              !shaken) {
            pollfd stopping{stop_fd, POLLIN, 0};
            if (::poll(&stopping, 1, 0) == 0) refused(peer, shaken.error().message);
            return std::nullopt;
          }
          auto local = connect_abstract(target_);
          if (!local) return std::nullopt;
          taken->second.second = std::move(*local);
          return std::move(*taken);
        }));
  }
}

void Front::refused(const std::string& peer, const std::string& why) {
  if (auto line = refusals_->note(peer, why, Clock::now())) log::warn({}, *line);
}

}  // namespace memlend::replica
