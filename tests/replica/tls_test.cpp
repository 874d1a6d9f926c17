#define BOOST_TEST_MODULE replica_tls
#include <boost/test/unit_test.hpp>

// The store's traffic over TLS (replica/tls.hpp): a cluster of three members
// in processes of their own, whose Raft connections and clients all go
// through it, and what reaches a member without a certificate of the
// cluster: nothing. Then the front alone, on real sockets: bytes carried
// both ways intact, its cap on connections, a silent handshake let go.

#include "core/log.hpp"
#include "replica/client.hpp"
#include "replica/tls.hpp"
#include "rdma/net.hpp"
#include "tests/replica/cluster.hpp"
#include "tests/support/pki.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>

using namespace memlend::test::replica_cluster;
using memlend::rdma::Clock;
using memlend::rdma::UniqueFd;
namespace net = memlend::rdma::net;

namespace {

const memlend::test::Pki& pki() {
  static memlend::test::Pki made;
  return made;
}

TlsFiles files(const std::string& node, const std::string& ca = "ca") {
  return {pki().file(ca + ".pem"), pki().file(node + ".pem"), pki().file(node + ".key")};
}

std::shared_ptr<const Tls> load(const TlsFiles& f) {
  auto tls = Tls::load(f.ca, f.cert, f.key);
  BOOST_TEST_REQUIRE(bool(tls), (tls ? "" : tls.error().message));
  return *tls;
}

ClientOptions quick(std::shared_ptr<const Tls> tls) {
  ClientOptions o;
  o.timeout = milliseconds(3000);
  o.tls = std::move(tls);
  return o;
}

// Waits for `done` up to `bound`, asking every few milliseconds: the front's
// threads change what it is asked about.
template <class F>
bool eventually(F done, milliseconds bound = seconds(20)) {
  auto until = Clock::now() + bound;
  while (!done()) {
    if (Clock::now() > until) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
  return true;
}

// An abstract Unix socket that echoes every byte back, one connection at a
// time, as dqlite's listener stands behind a front.
class Echo {
 public:
  Echo() : name_("@memlend-tls-test-" + std::to_string(::getpid()) + "-" + std::to_string(++count_)) {
    fd_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path + 1, name_.data() + 1, name_.size() - 1);
    auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name_.size());
    BOOST_TEST_REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), len) == 0, std::strerror(errno));
    BOOST_TEST_REQUIRE(::listen(fd_.get(), 16) == 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~Echo() {
    ::shutdown(fd_.get(), SHUT_RDWR);
    thread_.join();
  }
  const std::string& name() const { return name_; }

 private:
  void serve() {
    for (;;) {
      UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) return;
      char buf[65536];
      for (ssize_t n; (n = ::recv(c.get(), buf, sizeof buf, 0)) > 0;)
        if (::send(c.get(), buf, static_cast<std::size_t>(n), MSG_NOSIGNAL) != n) break;
    }
  }
  static inline std::atomic<int> count_{0};
  std::string name_;
  UniqueFd fd_;
  std::thread thread_;
};

// Whether the peer of `fd` closed it within `bound`.
bool closed_by_peer(int fd, milliseconds bound) {
  char byte;
  auto until = Clock::now() + bound;
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int left = static_cast<int>(std::chrono::duration_cast<milliseconds>(until - Clock::now()).count());
    if (left <= 0 || ::poll(&p, 1, left) <= 0) return false;
    ssize_t n = ::recv(fd, &byte, 1, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return true;
  }
}

// The log's lines while a test listens: core/log.hpp's writer is a plain
// function, so they go to one place for the process.
struct Heard {
  std::mutex mutex;
  std::vector<std::string> lines;
};
Heard& heard() {
  static Heard h;
  return h;
}
void hear(memlend::log::Level, const memlend::log::Fields&, std::string_view message) {
  std::lock_guard<std::mutex> lock(heard().mutex);
  heard().lines.emplace_back(message);
}
struct Listening {
  Listening() {
    std::lock_guard<std::mutex> lock(heard().mutex);
    heard().lines.clear();
    memlend::log::install(hear, false);
  }
  ~Listening() { memlend::log::install(nullptr, false); }
  Listening(const Listening&) = delete;
  Listening& operator=(const Listening&) = delete;
  std::size_t with(const std::string& part) {
    std::lock_guard<std::mutex> lock(heard().mutex);
    return static_cast<std::size_t>(std::count_if(heard().lines.begin(), heard().lines.end(), [&](const auto& l) {
      return l.find(part) != std::string::npos;
    }));
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(raft_and_clients_go_through_tls_and_the_cluster_survives_its_leaders_death) {
  Cluster cluster(3, {}, files("B"));
  Client c = must(connect_leader(cluster.addresses(), db, election_bound, cluster.options()), "leader");
  must(c.exec("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"), "create");
  must(c.exec("INSERT INTO t VALUES (1, 'before')"), "insert");

  // The leader dies: the others elect over their TLS connections to each
  // other, and what it committed is there.
  cluster.kill9(1);
  Client next = must(connect_leader({cluster.address(2), cluster.address(3)}, db, election_bound, cluster.options()),
                     "a new leader");
  BOOST_TEST(must(next.leader(), "leader").id != 1u);
  auto rows = must(next.query("SELECT v FROM t WHERE k = 1"), "read");
  BOOST_TEST_REQUIRE(rows.rows.size() == 1u);
  BOOST_TEST(std::get<std::string>(rows.rows[0][0]) == "before");
  must(next.exec("INSERT INTO t VALUES (2, 'after')"), "a write with one member down");

  // A client of another node of the cluster, with its own certificate.
  Client other = must(connect_leader({cluster.address(3)}, db, election_bound, quick(load(files("evil")))), "evil");
  BOOST_TEST(must(other.query("SELECT count(*) FROM t"), "count").rows.size() == 1u);
}

BOOST_AUTO_TEST_CASE(a_peer_without_a_certificate_of_the_cluster_reaches_nothing) {
  Cluster cluster(3, {}, files("B"));
  const std::string& member = cluster.address(2);

  // Plain TCP, as every client spoke before: the member takes its bytes for
  // a broken handshake and closes.
  auto plain = Client::connect(member, quick(nullptr));
  BOOST_TEST_REQUIRE(!plain);
  BOOST_TEST(plain.error().message.find(member) != std::string::npos, plain.error().message);

  // A certificate of another CA, trusting that CA: it refuses the member.
  auto stranger = Client::connect(member, quick(load(files("stranger", "otherca"))));
  BOOST_TEST_REQUIRE(!stranger);
  BOOST_TEST(stranger.error().message.find("TLS handshake failed: certificate") != std::string::npos,
             stranger.error().message);

  // The same certificate trusting the cluster's CA: the member refuses it.
  // Under TLS 1.3 the client hears so after its own handshake, before any
  // answer.
  auto intruder = Client::connect(member, quick(load({pki().file("ca.pem"), pki().file("stranger.pem"),
                                                      pki().file("stranger.key")})));
  BOOST_TEST_REQUIRE(!intruder);

  // Bytes that are no TLS at all, and a connection that says nothing.
  {
    auto junk = net::connect_tcp(member, milliseconds(3000));
    BOOST_TEST_REQUIRE(bool(junk));
    std::mt19937 random(7);
    std::vector<std::uint8_t> bytes(4096);
    for (auto& b : bytes) b = static_cast<std::uint8_t>(random());
    (void)!::send(junk->get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    BOOST_TEST(closed_by_peer(junk->get(), milliseconds(10000)));
  }
  auto silent = net::connect_tcp(member, milliseconds(3000));
  BOOST_TEST_REQUIRE(bool(silent));

  // The cluster, all the while, serves those who hold a certificate.
  Client c = must(connect_leader({member}, db, election_bound, cluster.options()), "leader");
  must(c.exec("CREATE TABLE IF NOT EXISTS t (k INTEGER)"), "a write");
}

BOOST_AUTO_TEST_CASE(a_front_carries_bytes_both_ways_intact_and_ends_with_either_side) {
  Echo echo;
  auto tls = load(files("B"));
  std::string address = "127.0.0.1:" + std::to_string(memlend::test::free_loopback_port());
  auto front = must(Front::start(tls, address, echo.name()), "front");
  auto dialed = must(dial(*load(files("evil")), address, Clock::now() + seconds(10)), "dial");

  // More than every buffer on the way holds, so that each side waits for
  // the other: 4 MiB out while reading back.
  std::vector<std::uint8_t> out(std::size_t{4} << 20), back(out.size());
  std::mt19937 random(11);
  for (auto& b : out) b = static_cast<std::uint8_t>(random());
  std::thread writer([&] {
    iovec iov{out.data(), out.size()};
    BOOST_TEST(bool(net::send_all(dialed.local.get(), &iov, 1, Clock::now() + seconds(60))));
  });
  auto got = net::recv_exact(dialed.local.get(), back.data(), back.size(), Clock::now() + seconds(60));
  writer.join();
  BOOST_TEST_REQUIRE(bool(got), (got ? "" : got.error().message));
  BOOST_TEST((back == out));

  // The front stops: the dialled side reads end-of-file, and its pump ends.
  front.reset();
  BOOST_TEST(closed_by_peer(dialed.local.get(), milliseconds(10000)));
  BOOST_TEST(eventually([&] { return dialed.pump->done(); }));

  // A front whose target does not listen closes the connection it took.
  auto lost = must(Front::start(tls, address, "@memlend-tls-test-nobody-" + std::to_string(::getpid())), "front");
  auto nowhere = must(dial(*tls, address, Clock::now() + seconds(10)), "dial");
  BOOST_TEST(closed_by_peer(nowhere.local.get(), milliseconds(10000)));
}

BOOST_AUTO_TEST_CASE(a_front_caps_its_connections_and_lets_a_silent_handshake_go) {
  Echo echo;
  auto tls = load(files("B"));
  std::string address = "127.0.0.1:" + std::to_string(memlend::test::free_loopback_port());
  Front::Options capped;
  capped.max_connections = 2;
  capped.handshake = seconds(120);  // held until the test lets go
  capped.refusals_quiet = seconds(600);  // one line, however slow the machine
  Listening log;
  {
    auto front = must(Front::start(tls, address, echo.name(), capped), "front");
    auto idle1 = net::connect_tcp(address, milliseconds(3000));
    auto idle2 = net::connect_tcp(address, milliseconds(3000));
    BOOST_TEST_REQUIRE((idle1 && idle2));
    BOOST_TEST_REQUIRE(eventually([&] { return front->connections() == 2u; }));
    // A third is closed as it comes: the two that say nothing hold it all.
    auto third = dial(*tls, address, Clock::now() + seconds(10));
    BOOST_TEST(!third);
    BOOST_TEST(eventually([&] { return log.with("to " + address + ": 2 connections are open already") == 1u; }));
    BOOST_TEST(log.with("store: refused a connection from 127.0.0.1:") == 1u);
    idle1->reset();
    // The one that left frees its place once its handshake reads the end.
    BOOST_TEST_REQUIRE(eventually([&] { return front->connections() == 1u; }));
    auto fourth = dial(*tls, address, Clock::now() + seconds(10));
    BOOST_TEST_REQUIRE(bool(fourth), (fourth ? "" : fourth.error().message));
  }
  Front::Options hasty;
  hasty.handshake = milliseconds(200);
  auto front = must(Front::start(tls, address, echo.name(), hasty), "front");
  auto silent = net::connect_tcp(address, milliseconds(3000));
  BOOST_TEST_REQUIRE(bool(silent));
  BOOST_TEST(closed_by_peer(silent->get(), milliseconds(10000)));
  BOOST_TEST(eventually([&] { return front->connections() == 0u; }));
  BOOST_TEST(log.with(": TLS handshake timed out") == 1u);
  // A front that stops refuses nobody: the handshakes it ends say nothing.
  auto waiting = net::connect_tcp(address, milliseconds(3000));
  BOOST_TEST_REQUIRE(bool(waiting));
  BOOST_TEST_REQUIRE(eventually([&] { return front->connections() == 1u; }));
  front.reset();
  BOOST_TEST(log.with("store: refused") == 2u);
}

BOOST_AUTO_TEST_CASE(refusals_make_a_line_at_once_then_one_a_quiet_spell_that_counts_the_rest) {
  RefusalLog refusals("10.0.0.1:7420", seconds(10));
  auto t = Clock::now();
  auto first = refusals.note("10.0.0.9:4000", "TLS handshake failed: certificate: certificate has expired", t);
  BOOST_TEST_REQUIRE(bool(first));
  BOOST_TEST(*first ==
             "store: refused a connection from 10.0.0.9:4000 to 10.0.0.1:7420: TLS handshake failed: certificate: "
             "certificate has expired");
  int said = 0;
  for (int i = 1; i <= 1000; ++i)
    said += bool(refusals.note("10.0.0.9:" + std::to_string(4000 + i), "TLS handshake timed out", t + milliseconds(i)));
  BOOST_TEST(said == 0);
  auto next = refusals.note("10.0.0.7:5000", "two\nlines", t + seconds(10));
  BOOST_TEST_REQUIRE(bool(next));
  BOOST_TEST(*next == "store: refused a connection from 10.0.0.7:5000 to 10.0.0.1:7420: two\\nlines (and 1000 more "
                      "refused since the last such line)");
  BOOST_TEST(!refusals.note("10.0.0.7:5001", "again", t + seconds(19)));
  auto third = refusals.note("10.0.0.7:5002", "again", t + seconds(20));
  BOOST_TEST_REQUIRE(bool(third));
  BOOST_TEST(third->find("(and 1 more refused") != std::string::npos, *third);
}
