// The TCP transport (client side) and the donor's control client.
#include "rdma/donor.hpp"
#include "rdma/net.hpp"
#include "rdma/protocol.hpp"
#include "rdma/tcp.hpp"

#include <sys/socket.h>

#include <atomic>
#include <deque>

namespace memlend::rdma {

using wire::Op;

namespace {

// One authenticated connection to a donor: the hello, signed requests and
// their responses. Used by the transport and by the control client.
class ClientConnection {
 public:
  static Expected<ClientConnection> open(const std::string& donor, const Timeouts& t) {
    auto fd = net::connect_tcp(donor, t.connect);
    if (!fd) return fd.error();
    std::uint8_t hello[wire::hello_size];
    if (auto s = net::recv_exact(fd->get(), hello, sizeof hello, t.connect); !s)
      return Error{"donor " + donor + ": no hello: " + s.error().message};
    auto h = wire::decode_hello(hello, sizeof hello);
    if (!h) return Error{"donor " + donor + ": " + h.error().message};
    ClientConnection c(std::move(*fd), h->nonce, t);
    c.verbs_port_ = h->verbs_port;
    return c;
  }

  std::uint16_t verbs_port() const { return verbs_port_; }

  // `payload` follows the header for writes.
  Status send(wire::Request r, const wire::Mac& mac, const void* payload = nullptr) {
    r.seq = ++seq_;
    std::uint8_t header[wire::request_size];
    wire::encode(r, header);
    r.tag = mac.tag(header, nonce_);
    wire::encode(r, header);
    iovec iov[2] = {{header, sizeof header}, {const_cast<void*>(payload), payload ? r.length : 0u}};
    return net::send_all(fd_.get(), iov, payload ? 2 : 1, t_.io);
  }

  Expected<wire::Response> receive(Op op, std::uint64_t seq) {
    std::uint8_t header[wire::response_size];
    if (auto s = net::recv_exact(fd_.get(), header, sizeof header, t_.io, t_.busy_poll); !s) return s.error();
    auto resp = wire::decode_response(header, sizeof header);
    if (!resp) return resp.error();
    if (resp->seq != seq || resp->op != op) return Error{"response out of order"};
    if (resp->code == wire::Code::refused) return Error{"the donor refused the request and dropped the connection"};
    return *resp;
  }

  Expected<wire::Response> call(const wire::Request& r, const wire::Mac& mac) {
    if (auto s = send(r, mac); !s) return s.error();
    return receive(r.op, seq_);
  }

  int fd() const { return fd_.get(); }
  std::uint64_t seq() const { return seq_; }
  const Timeouts& timeouts() const { return t_; }

 private:
  ClientConnection(UniqueFd fd, const wire::Nonce& nonce, const Timeouts& t) : fd_(std::move(fd)), nonce_(nonce), t_(t) {}
  UniqueFd fd_;
  wire::Nonce nonce_;
  Timeouts t_;
  std::uint64_t seq_ = 0;
  std::uint16_t verbs_port_ = 0;
};

class TcpTransport final : public LeaseConnection {
 public:
  TcpTransport(ClientConnection conn, const LeaseTarget& lease)
      : conn_(std::move(conn)), lease_(lease), mac_(lease.key) {}

  Status wait(Ticket ticket) override {
    while (done_ < ticket) {
      if (broken_) return Error{error_};
      if (pending_.empty()) return fail("wait for ticket " + std::to_string(ticket) + " never posted");
      Pending p = pending_.front();
      auto resp = conn_.receive(p.op, p.seq);
      if (!resp) return fail(resp.error().message);
      if (p.op == Op::read) {
        if (resp->length != p.length) return fail("donor sent " + std::to_string(resp->length) + " bytes, not " + std::to_string(p.length));
        if (auto s = net::recv_exact(conn_.fd(), p.data, p.length, conn_.timeouts().io, conn_.timeouts().busy_poll); !s)
          return fail(s.error().message);
      } else if (resp->length != 0) {
        return fail("donor sent data with an acknowledgement");
      }
      pending_.pop_front();
      done_ = p.ticket;
    }
    return ok();
  }

  void interrupt() override {
    interrupted_ = true;
    ::shutdown(conn_.fd(), SHUT_RDWR);
  }
  TransportKind kind() const override { return TransportKind::tcp; }
  std::uint64_t lease_bytes() const override { return lease_.bytes; }
  std::string describe() const override {
    return "tcp " + lease_.where.addr + " lease " + std::to_string(lease_.where.id);
  }

 private:
  struct Pending {
    Ticket ticket;
    Op op;
    std::uint64_t seq;
    void* data;
    std::uint32_t length;
  };
  // Bounds how far requests run ahead of their responses: the donor's replies
  // must always fit the socket buffers, or both sides would block on send.
  static constexpr std::size_t max_pending = 64;

  Expected<Ticket> post_one(Direction d, std::uint64_t offset, void* data, std::uint32_t length) override {
    return post_request(d == Direction::read ? Op::read : Op::write, offset, data, length);
  }

  Expected<Ticket> post_discard(std::uint64_t offset, std::uint32_t length) override {
    return post_request(Op::discard, offset, nullptr, length);
  }

  Expected<Ticket> post_request(Op op, std::uint64_t offset, void* data, std::uint32_t length) {
    if (broken_) return Error{error_};
    if (pending_.size() >= max_pending) {
      if (auto s = wait(pending_.front().ticket); !s) return s.error();
    }
    wire::Request r;
    r.op = op;
    r.lease = lease_.where.id;
    r.offset = offset;
    r.length = length;
    if (auto s = conn_.send(r, mac_, op == Op::write ? data : nullptr); !s) return fail(s.error().message).error();
    pending_.push_back({++next_ticket_, op, conn_.seq(), data, length});
    return next_ticket_;
  }

  Status fail(const std::string& why) {
    if (!broken_) {
      error_ = describe() + ": " + (interrupted_ ? std::string("interrupted") : why);
      broken_ = true;
    }
    return Error{error_};
  }

  ClientConnection conn_;
  LeaseTarget lease_;
  wire::Mac mac_;
  std::deque<Pending> pending_;
  Ticket next_ticket_ = 0;
  Ticket done_ = 0;
  bool broken_ = false;
  std::atomic<bool> interrupted_{false};
  std::string error_;
};

class TcpDonorClient final : public DonorClient {
 public:
  TcpDonorClient(ClientConnection conn, std::string donor, const Secret& pool_secret)
      : conn_(std::move(conn)), donor_(std::move(donor)), pool_secret_(pool_secret), pool_mac_(pool_secret) {}

  Expected<LeaseTarget> grant(std::uint64_t bytes) override {
    wire::Request r;
    r.op = Op::grant;
    r.offset = bytes;
    auto resp = conn_.call(r, pool_mac_);
    if (!resp) return Error{"donor " + donor_ + ": grant: " + resp.error().message};
    if (resp->code == wire::Code::no_space) return Error{"donor " + donor_ + ": no room for " + std::to_string(bytes) + " bytes"};
    return LeaseTarget{{donor_, resp->value, resp->value2, {}}, bytes, lease_secret(pool_secret_, resp->value, resp->value2)};
  }

  Status release(const LeaseTarget& lease) override {
    wire::Request r;
    r.op = Op::release;
    r.lease = lease.where.id;
    wire::Mac mac(lease.key);
    auto resp = conn_.call(r, mac);
    if (!resp) return Error{"donor " + donor_ + ": release: " + resp.error().message};
    return ok();
  }

  Expected<PoolStats> stats() override {
    auto counts = pool_call(Op::stats, "stats");
    if (!counts) return counts.error();
    auto usage = pool_call(Op::usage, "usage");
    if (!usage) return Error{usage.error().message + " (a donor older than the usage op drops the connection on it)"};
    PoolStats s;
    s.granted_bytes = counts->value;
    s.pool_bytes = counts->value2;
    s.resident_bytes = usage->value;
    s.discarded_bytes = usage->value2;
    return s;
  }

  // One signed request whose answer proves the donor took the pool secret;
  // an op every donor knows, so that connecting works with older ones.
  Status authenticate() {
    auto resp = pool_call(Op::stats, "stats");
    if (!resp) return resp.error();
    return ok();
  }

 private:
  Expected<wire::Response> pool_call(Op op, const std::string& what) {
    wire::Request r;
    r.op = op;
    auto resp = conn_.call(r, pool_mac_);
    if (!resp) return Error{"donor " + donor_ + ": " + what + ": " + resp.error().message};
    return resp;
  }

  ClientConnection conn_;
  std::string donor_;
  Secret pool_secret_;
  wire::Mac pool_mac_;
};

}  // namespace

Expected<std::unique_ptr<LeaseConnection>> connect_tcp_lease(const LeaseTarget& lease, const Timeouts& timeouts) {
  auto conn = ClientConnection::open(lease.where.addr, timeouts);
  if (!conn) return conn.error();
  wire::Request attach;
  attach.op = Op::attach;
  attach.lease = lease.where.id;
  wire::Mac mac(lease.key);
  auto resp = conn->call(attach, mac);
  std::string name = "lease " + std::to_string(lease.where.id) + " on " + lease.where.addr;
  if (!resp) return Error{name + ": " + resp.error().message};
  if (resp->value2 != lease.where.epoch) return Error{name + ": granted again since (epoch changed)"};
  LeaseTarget known = lease;
  if (known.bytes == 0) known.bytes = resp->value;
  if (known.bytes != resp->value)
    return Error{name + ": the donor says " + std::to_string(resp->value) + " bytes, not " + std::to_string(lease.bytes)};
  return std::unique_ptr<LeaseConnection>(new TcpTransport(std::move(*conn), known));
}

Expected<std::uint16_t> donor_verbs_port(const std::string& donor, const Timeouts& timeouts) {
  auto conn = ClientConnection::open(donor, timeouts);
  if (!conn) return conn.error();
  return conn->verbs_port();
}

Expected<std::unique_ptr<DonorClient>> DonorClient::connect(const std::string& donor, const Secret& pool_secret,
                                                            const Timeouts& timeouts) {
  auto conn = ClientConnection::open(donor, timeouts);
  if (!conn) return conn.error();
  auto client = std::make_unique<TcpDonorClient>(std::move(*conn), donor, pool_secret);
  if (auto s = client->authenticate(); !s) return s.error();
  return std::unique_ptr<DonorClient>(std::move(client));
}

}  // namespace memlend::rdma
