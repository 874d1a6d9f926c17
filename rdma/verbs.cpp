// The verbs transport: rdma_cm to connect, one RC queue pair per connection,
// one-sided RDMA READ/WRITE against the lease's memory region, completions
// polled with a deadline. The donor's CPU only takes part in connecting.
//
// Isolation: each lease gets its own memory registration covering exactly
// its extent, and its rkey goes only to a client that proved it holds the
// lease's secret. One registration for the whole pool would be cheaper, but
// its rkey would open every lease in the pool to any lease holder.
// Authentication happens once, in the connect request's private data (a tag
// over the lease id, epoch and a client nonce); as with any RDMA, the fabric
// itself is trusted after that.
#include "rdma/verbs.hpp"

#include "rdma/protocol.hpp"
#include "rdma/tcp.hpp"

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <openssl/rand.h>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <list>
#include <mutex>
#include <netdb.h>
#include <poll.h>
#include <thread>
#include <vector>

namespace memlend::rdma {

namespace {

constexpr char connect_magic[4] = {'M', 'L', 'V', 'C'};
constexpr char accept_magic[4] = {'M', 'L', 'V', 'A'};
constexpr std::size_t connect_size = wire::signed_size + wire::tag_size;  // 56: rdma_cm's limit for TCP port space
constexpr int send_depth = 128;

// The connect request's private data: magic, version, lease, epoch, nonce, tag.
struct ConnectData {
  std::uint64_t lease = 0;
  std::uint64_t epoch = 0;
  std::array<std::uint8_t, 16> nonce{};
  wire::Tag tag{};
};

void encode_connect(const ConnectData& c, std::uint8_t* out) {
  std::memset(out, 0, connect_size);
  std::memcpy(out, connect_magic, 4);
  out[4] = wire::version;
  wire::store_le64(out + 8, c.lease);
  wire::store_le64(out + 16, c.epoch);
  std::memcpy(out + 24, c.nonce.data(), 16);
  std::memcpy(out + wire::signed_size, c.tag.data(), wire::tag_size);
}

Expected<ConnectData> decode_connect(const void* data, std::size_t size) {
  if (!data || size < connect_size) return Error{"connect request without memlend private data"};
  auto* p = static_cast<const std::uint8_t*>(data);
  if (std::memcmp(p, connect_magic, 4) != 0 || p[4] != wire::version) return Error{"connect request: wrong magic or version"};
  ConnectData c;
  c.lease = wire::load_le64(p + 8);
  c.epoch = wire::load_le64(p + 16);
  std::memcpy(c.nonce.data(), p + 24, 16);
  std::memcpy(c.tag.data(), p + wire::signed_size, wire::tag_size);
  return c;
}

// The accept reply: where the lease is in the donor's address space and its rkey.
constexpr std::size_t accept_size = 32;
void encode_accept(std::uint64_t addr, std::uint32_t rkey, std::uint64_t bytes, std::uint8_t* out) {
  std::memset(out, 0, accept_size);
  std::memcpy(out, accept_magic, 4);
  out[4] = wire::version;
  wire::store_le64(out + 8, addr);
  wire::store_le64(out + 16, rkey);
  wire::store_le64(out + 24, bytes);
}

const wire::Nonce zero_nonce{};

Status wait_cm_event(rdma_event_channel* ch, rdma_cm_event_type want, Millis timeout, rdma_cm_event** out) {
  pollfd p{ch->fd, POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (n <= 0) return Error{n == 0 ? "rdma_cm: timed out" : std::string("rdma_cm: ") + std::strerror(errno)};
  rdma_cm_event* ev = nullptr;
  if (rdma_get_cm_event(ch, &ev) != 0) return sys_error("rdma_get_cm_event", errno);
  if (ev->event != want) {
    std::string what = std::string("rdma_cm: ") + rdma_event_str(ev->event) + " instead of " + rdma_event_str(want);
    if (ev->event == RDMA_CM_EVENT_REJECTED) what += " (the donor refused the lease id, epoch or secret)";
    rdma_ack_cm_event(ev);
    return Error{what};
  }
  *out = ev;
  return ok();
}

Expected<addrinfo*> resolve(const std::string& host, std::uint16_t port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string p = std::to_string(port);
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), p.c_str(), &hints, &res);
  if (rc != 0) return Error{"address " + host + ": " + ::gai_strerror(rc)};
  return res;
}

class VerbsTransport final : public LeaseConnection {
 public:
  VerbsTransport(const LeaseTarget& lease, const Timeouts& t) : lease_(lease), t_(t) {}

  ~VerbsTransport() override {
    if (id_ && connected_) rdma_disconnect(id_);
    if (id_ && id_->qp) rdma_destroy_qp(id_);
    for (auto* mr : mrs_) ibv_dereg_mr(mr);
    if (cq_) ibv_destroy_cq(cq_);
    if (cc_) ibv_destroy_comp_channel(cc_);
    if (pd_) ibv_dealloc_pd(pd_);
    if (id_) rdma_destroy_id(id_);
    if (ch_) rdma_destroy_event_channel(ch_);
  }

  Status connect(std::uint16_t port) {
    auto ep = parse_endpoint(lease_.where.addr);
    if (!ep) return ep.error();
    auto res = resolve(ep->host, port);
    if (!res) return res.error();
    addrinfo* ai = *res;
    ch_ = rdma_create_event_channel();
    if (!ch_) return fail_sys("rdma_create_event_channel");
    if (rdma_create_id(ch_, &id_, nullptr, RDMA_PS_TCP) != 0) return fail_sys("rdma_create_id");
    int ms = static_cast<int>(t_.connect.count());
    int rc = rdma_resolve_addr(id_, nullptr, ai->ai_addr, ms);
    ::freeaddrinfo(ai);
    if (rc != 0) return fail_sys("rdma_resolve_addr");
    rdma_cm_event* ev = nullptr;
    if (auto s = wait_cm_event(ch_, RDMA_CM_EVENT_ADDR_RESOLVED, t_.connect, &ev); !s) return fail(s.error().message);
    rdma_ack_cm_event(ev);
    if (rdma_resolve_route(id_, ms) != 0) return fail_sys("rdma_resolve_route");
    if (auto s = wait_cm_event(ch_, RDMA_CM_EVENT_ROUTE_RESOLVED, t_.connect, &ev); !s) return fail(s.error().message);
    rdma_ack_cm_event(ev);

    pd_ = ibv_alloc_pd(id_->verbs);
    if (!pd_) return fail_sys("ibv_alloc_pd");
    cc_ = ibv_create_comp_channel(id_->verbs);
    if (!cc_) return fail_sys("ibv_create_comp_channel");
    cq_ = ibv_create_cq(id_->verbs, send_depth * 2, nullptr, cc_, 0);
    if (!cq_) return fail_sys("ibv_create_cq");
    ibv_qp_init_attr qa{};
    qa.send_cq = cq_;
    qa.recv_cq = cq_;
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = send_depth;
    qa.cap.max_recv_wr = 1;
    qa.cap.max_send_sge = 1;
    qa.cap.max_recv_sge = 1;
    if (rdma_create_qp(id_, pd_, &qa) != 0) return fail_sys("rdma_create_qp");

    ConnectData cd;
    cd.lease = lease_.where.id;
    cd.epoch = lease_.where.epoch;
    RAND_bytes(cd.nonce.data(), static_cast<int>(cd.nonce.size()));
    std::uint8_t pd[connect_size];
    encode_connect(cd, pd);
    cd.tag = wire::Mac(lease_.key).tag(pd, zero_nonce);
    encode_connect(cd, pd);
    rdma_conn_param param{};
    param.private_data = pd;
    param.private_data_len = connect_size;
    param.initiator_depth = 16;
    param.responder_resources = 16;
    param.retry_count = 7;
    param.rnr_retry_count = 7;
    if (rdma_connect(id_, &param) != 0) return fail_sys("rdma_connect");
    if (auto s = wait_cm_event(ch_, RDMA_CM_EVENT_ESTABLISHED, t_.connect, &ev); !s) return fail(s.error().message);
    const auto* reply = static_cast<const std::uint8_t*>(ev->param.conn.private_data);
    bool good = reply && ev->param.conn.private_data_len >= accept_size && std::memcmp(reply, accept_magic, 4) == 0;
    if (good) {
      remote_addr_ = wire::load_le64(reply + 8);
      rkey_ = static_cast<std::uint32_t>(wire::load_le64(reply + 16));
      std::uint64_t bytes = wire::load_le64(reply + 24);
      if (lease_.bytes == 0) lease_.bytes = bytes;
      good = bytes == lease_.bytes;
    }
    rdma_ack_cm_event(ev);
    connected_ = true;
    if (!good) return fail("the donor's accept reply is malformed or the lease size differs");
    if (ibv_req_notify_cq(cq_, 0) != 0) return fail_sys("ibv_req_notify_cq");
    return ok();
  }

  Status wait(Ticket ticket) override {
    auto deadline = Clock::now() + t_.io;
    while (done_ < ticket) {
      if (broken_) return Error{error_};
      ibv_wc wc[16];
      int n = ibv_poll_cq(cq_, 16, wc);
      if (n < 0) return fail("ibv_poll_cq failed");
      for (int i = 0; i < n; ++i) {
        if (wc[i].status != IBV_WC_SUCCESS)
          return fail(std::string("RDMA transfer failed: ") + ibv_wc_status_str(wc[i].status));
        done_ = std::max<Ticket>(done_, wc[i].wr_id);
        --outstanding_;
      }
      if (n > 0) continue;
      if (interrupted_) return fail("interrupted");
      if (Clock::now() >= deadline) return fail("no completion within the I/O timeout (donor gone?)");
      // Sleep on the completion channel in short slices, so that interrupt()
      // and the deadline are seen even if no completion ever comes.
      pollfd p{cc_->fd, POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        ibv_cq* cq = nullptr;
        void* ctx = nullptr;
        if (ibv_get_cq_event(cc_, &cq, &ctx) == 0) {
          ibv_ack_cq_events(cq, 1);
          ibv_req_notify_cq(cq_, 0);
        }
      }
    }
    return ok();
  }

  Status register_memory(void* base, std::size_t length) override {
    if (broken_) return Error{error_};
    if (find_mr(base, length)) return ok();
    auto* mr = ibv_reg_mr(pd_, base, length, IBV_ACCESS_LOCAL_WRITE);
    if (!mr) return fail_sys("ibv_reg_mr (local buffer)");
    mrs_.push_back(mr);
    return ok();
  }

  void interrupt() override {
    interrupted_ = true;
    if (id_ && connected_) rdma_disconnect(id_);
  }
  TransportKind kind() const override { return TransportKind::verbs; }
  std::uint64_t lease_bytes() const override { return lease_.bytes; }
  std::string describe() const override { return "verbs " + lease_.where.addr + " lease " + std::to_string(lease_.where.id); }

 private:
  ibv_mr* find_mr(void* p, std::size_t n) const {
    auto a = reinterpret_cast<std::uintptr_t>(p);
    for (auto* mr : mrs_) {
      auto b = reinterpret_cast<std::uintptr_t>(mr->addr);
      if (a >= b && a + n <= b + mr->length) return mr;
    }
    return nullptr;
  }

  Expected<Ticket> post_one(Direction d, std::uint64_t offset, void* data, std::uint32_t length) override {
    if (broken_) return Error{error_};
    ibv_mr* mr = find_mr(data, length);
    if (!mr) {
      // Unregistered memory costs a registration per transfer; the region
      // registers its buffer up front so this stays the exception.
      if (auto s = register_memory(data, length); !s) return s.error();
      mr = find_mr(data, length);
    }
    if (outstanding_ >= send_depth) {
      if (auto s = wait(done_ + 1); !s) return s.error();
    }
    ibv_sge sge{reinterpret_cast<std::uintptr_t>(data), length, mr->lkey};
    ibv_send_wr wr{};
    ibv_send_wr* bad = nullptr;
    wr.wr_id = ++next_ticket_;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = d == Direction::read ? IBV_WR_RDMA_READ : IBV_WR_RDMA_WRITE;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = remote_addr_ + offset;
    wr.wr.rdma.rkey = rkey_;
    if (ibv_post_send(id_->qp, &wr, &bad) != 0) return fail_sys("ibv_post_send").error();
    ++outstanding_;
    return next_ticket_;
  }

  // This transport keeps no control connection to the donor (the hello is
  // read on a short-lived one, the rest is RDMA), so the donor cannot be
  // asked to punch the range out: it is overwritten with zeros instead, which
  // erases it but leaves the memory resident until the lease ends.
  Expected<Ticket> post_discard(std::uint64_t offset, std::uint32_t length) override {
    if (zeros_.empty()) {
      zeros_.assign(zero_block, 0);
      if (auto s = register_memory(zeros_.data(), zeros_.size()); !s) return s.error();
    }
    Expected<Ticket> last = Ticket{0};
    do {
      auto piece = std::min<std::uint32_t>(length, zero_block);
      last = post_one(Direction::write, offset, zeros_.data(), piece);
      if (!last) return last;
      offset += piece;
      length -= piece;
    } while (length > 0);
    return last;
  }

  Status fail(const std::string& why) {
    if (!broken_) {
      broken_ = true;
      error_ = describe() + ": " + why;
    }
    return Error{error_};
  }
  Status fail_sys(const char* what) { return fail(std::string(what) + ": " + std::strerror(errno)); }

  LeaseTarget lease_;
  Timeouts t_;
  rdma_event_channel* ch_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  ibv_pd* pd_ = nullptr;
  ibv_comp_channel* cc_ = nullptr;
  ibv_cq* cq_ = nullptr;
  std::vector<ibv_mr*> mrs_;
  // The source of every discard's writes, never written after it is made.
  static constexpr std::uint32_t zero_block = 1u << 20;
  std::vector<std::uint8_t> zeros_;
  std::uint64_t remote_addr_ = 0;
  std::uint32_t rkey_ = 0;
  bool connected_ = false;
  Ticket next_ticket_ = 0;
  Ticket done_ = 0;
  int outstanding_ = 0;
  bool broken_ = false;
  std::atomic<bool> interrupted_{false};
  std::string error_;
};

class Listener final : public VerbsListener {
 public:
  Listener(std::shared_ptr<DonorPool> pool, const Timeouts& t, VerbsHooks hooks)
      : pool_(std::move(pool)), t_(t), hooks_(std::move(hooks)) {}
  ~Listener() override { stop(); }

  Status listen(const std::string& address) {
    auto ep = parse_endpoint(address);
    if (!ep) return ep.error();
    ch_ = rdma_create_event_channel();
    if (!ch_) return sys_error("rdma_create_event_channel", errno);
    if (rdma_create_id(ch_, &listen_id_, nullptr, RDMA_PS_TCP) != 0) return sys_error("rdma_create_id", errno);
    // The TCP port first; iWARP shares TCP's port space, so then any port
    // (clients learn it from the hello).
    for (std::uint16_t port : {ep->port, std::uint16_t{0}}) {
      auto res = resolve(ep->host, port);
      if (!res) return res.error();
      int rc = rdma_bind_addr(listen_id_, (*res)->ai_addr);
      ::freeaddrinfo(*res);
      if (rc == 0) break;
      if (port == 0) return sys_error("rdma_bind_addr " + address, errno);
    }
    if (rdma_listen(listen_id_, 16) != 0) return sys_error("rdma_listen", errno);
    port_ = ntohs(rdma_get_src_port(listen_id_));
    thread_ = std::thread([this] { loop(); });
    return ok();
  }

  std::uint16_t port() const override { return port_; }

  void cut(std::uint64_t lease_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : conns_)
      if (c.lease->id() == lease_id) rdma_disconnect(c.id);
  }

  void stop() override {
    if (stopping_.exchange(true)) return;
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : conns_) teardown(c);
    conns_.clear();
    for (auto& [ctx, pd] : pds_) ibv_dealloc_pd(pd);
    pds_.clear();
    if (listen_id_) rdma_destroy_id(listen_id_);
    if (ch_) rdma_destroy_event_channel(ch_);
    listen_id_ = nullptr;
    ch_ = nullptr;
  }

 private:
  struct Conn {
    rdma_cm_id* id;
    ibv_cq* cq;
    ibv_mr* mr;
    std::shared_ptr<Lease> lease;
  };

  void loop() {
    while (!stopping_) {
      pollfd p{ch_->fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      rdma_cm_event* ev = nullptr;
      if (rdma_get_cm_event(ch_, &ev) != 0) continue;
      rdma_cm_id* id = ev->id;
      switch (ev->event) {
        case RDMA_CM_EVENT_CONNECT_REQUEST: {
          bool accepted = accept(id, ev->param.conn.private_data, ev->param.conn.private_data_len);
          rdma_ack_cm_event(ev);
          if (!accepted) {
            rdma_reject(id, nullptr, 0);
            rdma_destroy_id(id);
          }
          break;
        }
        case RDMA_CM_EVENT_DISCONNECTED:
        case RDMA_CM_EVENT_TIMEWAIT_EXIT:
        case RDMA_CM_EVENT_CONNECT_ERROR:
        case RDMA_CM_EVENT_UNREACHABLE:
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
          rdma_ack_cm_event(ev);
          drop(id);
          break;
        default: rdma_ack_cm_event(ev); break;
      }
    }
  }

  bool accept(rdma_cm_id* id, const void* data, std::size_t size) {
    auto cd = decode_connect(data, size);
    if (!cd) return false;
    auto lease = pool_->find(cd->lease);
    if (!lease || lease->revoked() || lease->epoch() != cd->epoch) return false;
    std::uint8_t signed_part[connect_size];
    std::memcpy(signed_part, data, connect_size);
    if (!wire::tag_equal(lease->mac().tag(signed_part, zero_nonce), cd->tag)) return false;
    ibv_pd* pd = pd_for(id->verbs);
    if (!pd) return false;
    ibv_mr* mr = ibv_reg_mr(pd, pool_->base() + lease->offset(), lease->bytes(),
                            IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE);
    if (!mr) return false;
    ibv_cq* cq = ibv_create_cq(id->verbs, 2, nullptr, nullptr, 0);
    ibv_qp_init_attr qa{};
    qa.send_cq = cq;
    qa.recv_cq = cq;
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = 1;
    qa.cap.max_recv_wr = 1;
    qa.cap.max_send_sge = 1;
    qa.cap.max_recv_sge = 1;
    if (!cq || rdma_create_qp(id, pd, &qa) != 0) {
      if (cq) ibv_destroy_cq(cq);
      ibv_dereg_mr(mr);
      return false;
    }
    std::uint8_t reply[accept_size];
    encode_accept(reinterpret_cast<std::uintptr_t>(mr->addr), mr->rkey, lease->bytes(), reply);
    rdma_conn_param param{};
    param.private_data = reply;
    param.private_data_len = accept_size;
    param.initiator_depth = 16;
    param.responder_resources = 16;
    if (rdma_accept(id, &param) != 0) {
      rdma_destroy_qp(id);
      ibv_destroy_cq(cq);
      ibv_dereg_mr(mr);
      return false;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      conns_.push_back(Conn{id, cq, mr, lease});
    }
    if (hooks_.attached) hooks_.attached(lease->id());
    return true;
  }

  void drop(rdma_cm_id* id) {
    std::uint64_t lease = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = conns_.begin(); it != conns_.end(); ++it) {
        if (it->id != id) continue;
        lease = it->lease->id();
        teardown(*it);
        conns_.erase(it);
        break;
      }
    }
    if (lease && hooks_.detached) hooks_.detached(lease);
  }

  // The rkey dies with the registration before the lease's extent can be
  // erased and reused (the Lease reference goes last).
  static void teardown(Conn& c) {
    rdma_disconnect(c.id);
    rdma_destroy_qp(c.id);
    ibv_dereg_mr(c.mr);
    ibv_destroy_cq(c.cq);
    rdma_destroy_id(c.id);
    c.lease.reset();
  }

  ibv_pd* pd_for(ibv_context* ctx) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [c, pd] : pds_)
      if (c == ctx) return pd;
    ibv_pd* pd = ibv_alloc_pd(ctx);
    if (pd) pds_.emplace_back(ctx, pd);
    return pd;
  }

  std::shared_ptr<DonorPool> pool_;
  Timeouts t_;
  VerbsHooks hooks_;
  rdma_event_channel* ch_ = nullptr;
  rdma_cm_id* listen_id_ = nullptr;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::list<Conn> conns_;
  std::vector<std::pair<ibv_context*, ibv_pd*>> pds_;
};

}  // namespace

std::optional<std::string> first_rdma_device() {
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (!list) return std::nullopt;
  std::optional<std::string> name;
  if (n > 0) name = ibv_get_device_name(list[0]);
  ibv_free_device_list(list);
  return name;
}

Expected<std::unique_ptr<LeaseConnection>> connect_verbs_lease(const LeaseTarget& lease, const Timeouts& timeouts) {
  auto port = donor_verbs_port(lease.where.addr, timeouts);
  if (!port) return port.error();
  if (*port == 0) return Error{"donor " + lease.where.addr + " serves TCP only (no RDMA device there)"};
  auto t = std::make_unique<VerbsTransport>(lease, timeouts);
  if (auto s = t->connect(*port); !s) return s.error();
  return std::unique_ptr<LeaseConnection>(std::move(t));
}

Expected<std::unique_ptr<VerbsListener>> start_verbs_listener(std::shared_ptr<DonorPool> pool,
                                                              const std::string& address, const Timeouts& timeouts,
                                                              VerbsHooks hooks) {
  auto l = std::make_unique<Listener>(std::move(pool), timeouts, std::move(hooks));
  if (auto s = l->listen(address); !s) return s.error();
  return std::unique_ptr<VerbsListener>(std::move(l));
}

}  // namespace memlend::rdma
