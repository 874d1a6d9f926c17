// The donor: zeroed leases, memory given back (on release and on discard),
// and refusals — out of bounds, wrong secret, replay, revoked lease — each
// followed by a dropped connection.
#define BOOST_TEST_MODULE rdma_donor
#include <boost/test/unit_test.hpp>

#include "rdma/net.hpp"
#include "rdma/protocol.hpp"
#include "tests/rdma/fixture.hpp"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <unistd.h>
#include <vector>

using namespace memlend;
using namespace memlend::rdma;

namespace {

// A hand-driven connection: sends exactly the request it is told to, signed
// with whatever key it is given.
struct RawClient {
  explicit RawClient(const std::string& address) {
    auto f = net::connect_tcp(address, Millis(2000));
    BOOST_TEST_REQUIRE(bool(f));
    fd = std::move(*f);
    std::uint8_t h[wire::hello_size];
    BOOST_TEST_REQUIRE(bool(net::recv_exact(fd.get(), h, sizeof h, Millis(2000))));
    nonce = wire::decode_hello(h, sizeof h)->nonce;
  }

  void send(wire::Request r, const Secret& key, const void* payload = nullptr) {
    std::uint8_t b[wire::request_size];
    wire::encode(r, b);
    r.tag = wire::Mac(key).tag(b, nonce);
    wire::encode(r, b);
    iovec iov[2] = {{b, sizeof b}, {const_cast<void*>(payload), payload ? r.length : 0u}};
    BOOST_TEST_REQUIRE(bool(net::send_all(fd.get(), iov, payload ? 2 : 1, Millis(2000))));
  }

  // The response, or an error when the connection ended first.
  Expected<wire::Response> response() {
    std::uint8_t b[wire::response_size];
    if (auto s = net::recv_exact(fd.get(), b, sizeof b, Millis(5000)); !s) return s.error();
    return wire::decode_response(b, sizeof b);
  }

  // True when the donor answered "refused" and then closed the connection.
  bool refused_then_dropped() {
    auto r = response();
    return r && r->code == wire::Code::refused && dropped();
  }

  // True when the donor closed the connection.
  bool dropped() {
    std::uint8_t b;
    auto s = net::recv_exact(fd.get(), &b, 1, Millis(5000));
    return !s && s.error().message.find("closed") != std::string::npos;
  }

  UniqueFd fd;
  wire::Nonce nonce{};
  std::uint64_t seq = 0;
};

wire::Request request(wire::Op op, std::uint64_t lease, std::uint64_t offset, std::uint32_t length, std::uint64_t seq) {
  wire::Request r;
  r.op = op;
  r.lease = lease;
  r.offset = offset;
  r.length = length;
  r.seq = seq;
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(new_lease_reads_zeros_whatever_the_pool_held) {
  test::LocalDonor donor(4 << 20);
  // Fill the whole pool through one lease, give it back, lease it all again.
  auto first = donor.lease(4 << 20);
  {
    auto t = connect_lease(first, TransportKind::tcp, {});
    BOOST_TEST_REQUIRE(bool(t));
    std::vector<std::uint8_t> junk(4 << 20, 0xA5);
    BOOST_TEST_REQUIRE(bool((*t)->write(0, junk.data(), junk.size())));
  }
  BOOST_TEST(donor.pool->stats().resident_bytes >= (4u << 20));
  BOOST_TEST_REQUIRE(bool(donor.pool->revoke(first.where.id)));
  BOOST_TEST(donor.pool->stats().resident_bytes == 0u);  // given back to the OS
  auto second = donor.lease(3 << 20);
  auto t = connect_lease(second, TransportKind::tcp, {});
  BOOST_TEST_REQUIRE(bool(t));
  std::vector<std::uint8_t> got(3 << 20, 0xFF);
  BOOST_TEST_REQUIRE(bool((*t)->read(0, got.data(), got.size())));
  BOOST_TEST(std::count(got.begin(), got.end(), 0) == static_cast<long>(got.size()));
}

BOOST_AUTO_TEST_CASE(odd_sizes_round_trip_and_leases_do_not_overlap) {
  test::LocalDonor donor(1 << 20);
  auto a = donor.lease(12345);
  auto b = donor.lease(777);
  auto ta = connect_lease(a, TransportKind::tcp, {});
  auto tb = connect_lease(b, TransportKind::tcp, {});
  BOOST_TEST_REQUIRE(bool(ta));
  BOOST_TEST_REQUIRE(bool(tb));
  std::vector<std::uint8_t> pa(12345, 1), pb(777, 2);
  BOOST_TEST_REQUIRE(bool((*ta)->write(0, pa.data(), pa.size())));
  BOOST_TEST_REQUIRE(bool((*tb)->write(0, pb.data(), pb.size())));
  std::vector<std::uint8_t> ra(12345), rb(777);
  BOOST_TEST_REQUIRE(bool((*ta)->read(0, ra.data(), ra.size())));
  BOOST_TEST_REQUIRE(bool((*tb)->read(0, rb.data(), rb.size())));
  BOOST_TEST((ra == pa));
  BOOST_TEST((rb == pb));
  // The last byte is in the lease, the next is not (checked on this side too).
  BOOST_TEST(bool((*tb)->read(776, rb.data(), 1)));
  BOOST_TEST(!(*tb)->read(777, rb.data(), 1));
}

BOOST_AUTO_TEST_CASE(out_of_bounds_request_is_refused_and_dropped) {
  test::LocalDonor donor(1 << 20);
  auto lease = donor.lease(64 << 10);
  RawClient c(donor.server->address());
  c.send(request(wire::Op::read, lease.where.id, (64 << 10) - 8, 16, 1), lease.key);
  BOOST_TEST(c.refused_then_dropped());
  // Offsets that wrap around 2^64 are out of bounds too.
  RawClient d(donor.server->address());
  d.send(request(wire::Op::write, lease.where.id, ~0ull - 3, 8, 1), lease.key);
  BOOST_TEST(d.refused_then_dropped());
}

BOOST_AUTO_TEST_CASE(another_leases_memory_is_out_of_reach) {
  test::LocalDonor donor(1 << 20);
  auto mine = donor.lease(64 << 10);
  auto theirs = donor.lease(64 << 10);
  // My secret, their lease id: refused.
  RawClient c(donor.server->address());
  c.send(request(wire::Op::read, theirs.where.id, 0, 16, 1), mine.key);
  BOOST_TEST(c.refused_then_dropped());
  // And the transport refuses to even attach with a wrong secret.
  LeaseTarget forged = theirs;
  forged.key = mine.key;
  auto t = connect_lease(forged, TransportKind::tcp, {});
  BOOST_TEST(!t);
  if (!t) BOOST_TEST(t.error().message.find("refused") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(wrong_pool_secret_cannot_grant) {
  test::LocalDonor donor(1 << 20);
  // The client proves its secret as it connects: a wrong one fails there.
  auto client = DonorClient::connect(donor.server->address(), random_secret());
  BOOST_TEST_REQUIRE(!client);
  BOOST_TEST(client.error().message.find("refused") != std::string::npos, client.error().message);
  BOOST_TEST(donor.pool->stats().leases == 0u);
  auto good = DonorClient::connect(donor.server->address(), donor.secret);
  BOOST_TEST_REQUIRE(bool(good));
  auto g2 = (*good)->grant(4096);
  BOOST_TEST_REQUIRE(bool(g2));
  BOOST_TEST(donor.pool->stats().leases == 1u);
  auto too_big = (*good)->grant(2 << 20);
  BOOST_TEST(!too_big);
  BOOST_TEST_REQUIRE(bool((*good)->release(*g2)));
  BOOST_TEST(donor.pool->stats().leases == 0u);
}

BOOST_AUTO_TEST_CASE(replayed_request_is_refused) {
  test::LocalDonor donor(1 << 20);
  auto lease = donor.lease(64 << 10);
  RawClient c(donor.server->address());
  c.send(request(wire::Op::read, lease.where.id, 0, 8, 5), lease.key);
  auto r = c.response();
  BOOST_TEST_REQUIRE(bool(r));
  BOOST_TEST((r->code == wire::Code::ok));
  std::uint8_t data[8];
  BOOST_TEST_REQUIRE(bool(net::recv_exact(c.fd.get(), data, 8, Millis(2000))));
  c.send(request(wire::Op::read, lease.where.id, 0, 8, 5), lease.key);  // same sequence number
  BOOST_TEST(c.refused_then_dropped());
}

BOOST_AUTO_TEST_CASE(garbage_is_dropped_without_an_answer) {
  test::LocalDonor donor(1 << 20);
  RawClient c(donor.server->address());
  std::uint8_t junk[wire::request_size];
  std::memset(junk, 0x41, sizeof junk);
  iovec iov{junk, sizeof junk};
  BOOST_TEST_REQUIRE(bool(net::send_all(c.fd.get(), &iov, 1, Millis(2000))));
  BOOST_TEST(c.dropped());
}

BOOST_AUTO_TEST_CASE(revoking_cuts_the_connections_of_the_lease) {
  test::LocalDonor donor(1 << 20);
  auto lease = donor.lease(64 << 10);
  auto t = connect_lease(lease, TransportKind::tcp, {});
  BOOST_TEST_REQUIRE(bool(t));
  std::uint8_t b[8];
  BOOST_TEST_REQUIRE(bool((*t)->read(0, b, 8)));
  BOOST_TEST_REQUIRE(bool(donor.pool->revoke(lease.where.id)));
  BOOST_TEST(!(*t)->read(0, b, 8));
  BOOST_TEST(!donor.pool->revoke(lease.where.id));  // twice is a bug upstream
}

BOOST_AUTO_TEST_CASE(a_lease_whose_connections_all_close_is_reported_orphaned) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::uint64_t> orphans;
  ServerOptions o;
  o.reclaim_orphans = true;
  o.on_orphan = [&](std::uint64_t lease) {
    std::lock_guard<std::mutex> lock(mu);
    orphans.push_back(lease);
    cv.notify_all();
  };
  test::LocalDonor donor(1 << 20, o);
  auto kept = donor.lease(64 << 10);
  auto lost = donor.lease(64 << 10);
  auto tk = connect_lease(kept, TransportKind::tcp, {});
  {
    auto tl = connect_lease(lost, TransportKind::tcp, {});
    BOOST_TEST_REQUIRE(bool(tl));
  }
  std::unique_lock<std::mutex> lock(mu);
  BOOST_TEST_REQUIRE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return !orphans.empty(); }));
  BOOST_TEST(orphans == std::vector<std::uint64_t>{lost.where.id});
  BOOST_TEST(donor.pool->find(lost.where.id) == nullptr);  // reclaimed
  BOOST_TEST(donor.pool->find(kept.where.id) != nullptr);
}

BOOST_AUTO_TEST_CASE(control_plane_names_its_leases) {
  auto pool = DonorPool::create(1 << 20, random_secret());
  BOOST_TEST_REQUIRE(bool(pool));
  auto g = (*pool)->grant(42, 1000);
  BOOST_TEST_REQUIRE(bool(g));
  BOOST_TEST(g->id == 42u);
  BOOST_TEST(!(*pool)->grant(42, 1000));  // already granted
  BOOST_TEST(!(*pool)->grant(0, 1000));   // reserved
  auto again = (*pool)->grant(1000);
  BOOST_TEST_REQUIRE(bool(again));
  BOOST_TEST(again->id != 42u);
  BOOST_TEST_REQUIRE(bool((*pool)->revoke(42)));
  auto g2 = (*pool)->grant(42, 1000);
  BOOST_TEST_REQUIRE(bool(g2));
  BOOST_TEST((g2->secret != g->secret));  // a new epoch, a new secret
}

namespace {

// Never zero, so that a zero read back is a discarded byte.
std::vector<std::uint8_t> marked(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>((i * 131 + seed) % 255 + 1);
  return v;
}

// Bytes of `got` other than `written` with [from, to) zeroed.
std::size_t wrong(const std::vector<std::uint8_t>& got, const std::vector<std::uint8_t>& written, std::size_t from = 0,
                  std::size_t to = 0) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) bad += got[i] != (i >= from && i < to ? 0 : written[i]);
  return bad;
}

std::vector<std::uint8_t> read_all(LeaseConnection& t) {
  std::vector<std::uint8_t> got(t.lease_bytes());
  BOOST_TEST_REQUIRE(bool(t.read(0, got.data(), got.size())));
  return got;
}

}  // namespace

BOOST_AUTO_TEST_CASE(discard_zeroes_partial_pages_and_touches_nothing_else) {
  const std::uint64_t page = ::sysconf(_SC_PAGESIZE);
  test::LocalDonor donor(4 << 20);
  auto lease = donor.lease((1 << 20) + 1000);
  auto t = connect_lease(lease, TransportKind::tcp, {});
  BOOST_TEST_REQUIRE(bool(t));
  auto written = marked(lease.bytes, 7);
  BOOST_TEST_REQUIRE(bool((*t)->write(0, written.data(), written.size())));

  // Both ends inside a page, two whole pages between them: those two go.
  std::uint64_t from = 100, to = 3 * page + 50;
  auto before = donor.pool->stats();
  BOOST_TEST_REQUIRE(bool((*t)->discard(from, to - from)));
  auto after = donor.pool->stats();
  BOOST_TEST(before.resident_bytes - after.resident_bytes == 2 * page);
  BOOST_TEST(after.discarded_bytes - before.discarded_bytes == to - from);
  BOOST_TEST(wrong(read_all(**t), written, from, to) == 0u);

  // Within one page: zeroed, nothing freed.
  BOOST_TEST_REQUIRE(bool((*t)->write(0, written.data(), written.size())));
  before = donor.pool->stats();
  BOOST_TEST_REQUIRE(bool((*t)->discard(5000, 10)));
  BOOST_TEST(donor.pool->stats().resident_bytes == before.resident_bytes);
  BOOST_TEST(wrong(read_all(**t), written, 5000, 5010) == 0u);

  // Up to the lease's last byte, which is not on a page boundary.
  BOOST_TEST_REQUIRE(bool((*t)->write(0, written.data(), written.size())));
  BOOST_TEST_REQUIRE(bool((*t)->discard(lease.bytes - 700, 700)));
  BOOST_TEST(wrong(read_all(**t), written, lease.bytes - 700, lease.bytes) == 0u);

  // Posted and not yet waited for: the discard comes after the write.
  auto ticket = (*t)->post_write(0, written.data(), 64 << 10);
  BOOST_TEST_REQUIRE(bool(ticket));
  BOOST_TEST_REQUIRE(bool((*t)->discard(0, 64 << 10)));
  BOOST_TEST_REQUIRE(bool((*t)->wait(*ticket)));
  std::vector<std::uint8_t> head(64 << 10, 0xFF);
  BOOST_TEST_REQUIRE(bool((*t)->read(0, head.data(), head.size())));
  BOOST_TEST(std::count(head.begin(), head.end(), 0) == static_cast<long>(head.size()));
}

BOOST_AUTO_TEST_CASE(discard_gives_the_memory_back_and_a_client_sees_it) {
  const std::uint64_t mib = 1 << 20;
  test::LocalDonor donor(8 * mib);
  auto lease = donor.lease(6 * mib);
  auto t = connect_lease(lease, TransportKind::tcp, {});
  BOOST_TEST_REQUIRE(bool(t));
  auto written = marked(lease.bytes, 3);
  BOOST_TEST_REQUIRE(bool((*t)->write(0, written.data(), written.size())));
  auto client = DonorClient::connect(donor.server->address(), donor.secret);
  BOOST_TEST_REQUIRE(bool(client));
  auto remote = (*client)->stats();
  BOOST_TEST_REQUIRE(bool(remote));
  BOOST_TEST(remote->resident_bytes == 6 * mib);
  BOOST_TEST(remote->discarded_bytes == 0u);
  BOOST_TEST(remote->granted_bytes == 6 * mib);

  BOOST_TEST_REQUIRE(bool((*t)->discard(mib, 4 * mib)));
  remote = (*client)->stats();
  BOOST_TEST_REQUIRE(bool(remote));
  BOOST_TEST(remote->resident_bytes == 2 * mib);
  BOOST_TEST(remote->discarded_bytes == 4 * mib);
  BOOST_TEST(donor.pool->stats().resident_bytes == 2 * mib);
  BOOST_TEST(wrong(read_all(**t), written, mib, 5 * mib) == 0u);

  BOOST_TEST_REQUIRE(bool((*t)->discard(0, lease.bytes)));
  remote = (*client)->stats();
  BOOST_TEST_REQUIRE(bool(remote));
  BOOST_TEST(remote->resident_bytes == 0u);
  BOOST_TEST(remote->discarded_bytes == 10 * mib);
  BOOST_TEST(remote->granted_bytes == 6 * mib);  // still lent: discarding is not releasing
}

BOOST_AUTO_TEST_CASE(discard_outside_the_lease_is_refused_and_spares_the_neighbour) {
  test::LocalDonor donor(1 << 20);
  // Cut one after the other from the pool: mine's extent ends where theirs begins.
  auto mine = donor.lease(12345);
  auto theirs = donor.lease(64 << 10);
  BOOST_TEST_REQUIRE(donor.pool->find(theirs.where.id)->offset() ==
                     donor.pool->find(mine.where.id)->offset() + donor.pool->find(mine.where.id)->extent());
  auto tm = connect_lease(mine, TransportKind::tcp, {});
  auto tt = connect_lease(theirs, TransportKind::tcp, {});
  BOOST_TEST_REQUIRE(bool(tm));
  BOOST_TEST_REQUIRE(bool(tt));
  auto pm = marked(mine.bytes, 1), pt = marked(theirs.bytes, 2);
  BOOST_TEST_REQUIRE(bool((*tm)->write(0, pm.data(), pm.size())));
  BOOST_TEST_REQUIRE(bool((*tt)->write(0, pt.data(), pt.size())));

  // This side refuses before sending, and the connection stays usable.
  BOOST_TEST(!(*tm)->discard(mine.bytes - 5, 16));
  BOOST_TEST(!(*tm)->discard(mine.bytes, 1));
  BOOST_TEST(!(*tm)->discard(~0ull - 3, 8));

  // The donor refuses what a client sends anyway, and drops the connection.
  struct Bad {
    std::uint64_t lease, offset;
    std::uint32_t length;
    const Secret& key;
  };
  for (const Bad& b : {Bad{mine.where.id, mine.bytes - 5, 16, mine.key}, Bad{mine.where.id, mine.bytes, 4096, mine.key},
                       Bad{mine.where.id, 16384, 4096, mine.key}, Bad{theirs.where.id, 0, 4096, mine.key}}) {
    RawClient c(donor.server->address());
    c.send(request(wire::Op::discard, b.lease, b.offset, b.length, 1), b.key);
    BOOST_TEST(c.refused_then_dropped());
  }
  // A range wrapping around 2^64 is not even decoded: dropped without an answer.
  RawClient w(donor.server->address());
  w.send(request(wire::Op::discard, mine.where.id, ~0ull - 3, 8, 1), mine.key);
  BOOST_TEST(w.dropped());

  BOOST_TEST(wrong(read_all(**tm), pm) == 0u);
  BOOST_TEST(wrong(read_all(**tt), pt) == 0u);
  // Up to my last byte frees my last page whole, and not a byte of theirs.
  BOOST_TEST_REQUIRE(bool((*tm)->discard(8000, mine.bytes - 8000)));
  BOOST_TEST(wrong(read_all(**tm), pm, 8000, mine.bytes) == 0u);
  BOOST_TEST(wrong(read_all(**tt), pt) == 0u);
  BOOST_TEST(donor.pool->stats().discarded_bytes == mine.bytes - 8000);
}

BOOST_AUTO_TEST_CASE(discard_requests_decode_with_their_range) {
  wire::Request r = request(wire::Op::discard, 3, 4096, wire::max_transfer, 1);
  std::uint8_t b[wire::request_size];
  wire::encode(r, b);
  auto d = wire::decode_request(b, sizeof b);
  BOOST_TEST_REQUIRE(bool(d));
  BOOST_TEST((d->op == wire::Op::discard));
  BOOST_TEST(d->length == wire::max_transfer);
  r.length = wire::max_transfer + 1;
  wire::encode(r, b);
  BOOST_TEST(!wire::decode_request(b, sizeof b));
  r = request(wire::Op::discard, 3, ~0ull - 3, 8, 1);
  wire::encode(r, b);
  BOOST_TEST(!wire::decode_request(b, sizeof b));
  // usage carries no range, and is the pool's.
  r = request(wire::Op::usage, 0, 0, 8, 1);
  wire::encode(r, b);
  BOOST_TEST(!wire::decode_request(b, sizeof b));
  BOOST_TEST(wire::pool_op(wire::Op::usage));
  BOOST_TEST(!wire::pool_op(wire::Op::discard));
}
