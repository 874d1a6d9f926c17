// The donor's server against clients that never authenticate: the hello
// deadline, the cap on unauthenticated connections, and the descriptor limit.
// Real sockets on loopback; every wait is bounded and none stands in for
// synchronisation.
#define BOOST_TEST_MODULE rdma_server_limits
#include <boost/test/unit_test.hpp>

#include "rdma/net.hpp"
#include "rdma/protocol.hpp"
#include "tests/rdma/fixture.hpp"

#include <csignal>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

using namespace memlend;
using namespace memlend::rdma;

namespace {

// A connection that reads the donor's hello and then says nothing.
UniqueFd idle_connection(const std::string& address) {
  auto fd = net::connect_tcp(address, Millis(5000));
  BOOST_TEST_REQUIRE(bool(fd), (fd ? "" : fd.error().message));
  return std::move(*fd);
}

// Reads what the donor sends until it closes the connection: true when it
// did within `limit`, false when the connection was still open then.
bool closed_by_donor(int fd, Millis limit) {
  auto deadline = Clock::now() + limit;
  for (;;) {
    auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[64];
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
  }
}

// True when the donor still holds the connection open: its hello is all
// there is to read, and no end of stream follows it.
bool still_open(int fd) {
  std::uint8_t hello[wire::hello_size];
  if (!net::recv_exact(fd, hello, sizeof hello, Millis(5000))) return false;
  char b;
  return ::recv(fd, &b, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_connection_that_never_authenticates_is_closed_at_the_hello_deadline) {
  ServerOptions o;
  o.hello_timeout = Millis(200);
  test::LocalDonor donor(1 << 20, o);
  auto fd = idle_connection(donor.server->address());
  BOOST_TEST(closed_by_donor(fd.get(), Millis(20000)));
  BOOST_TEST(donor.server->stats().hello_timeouts == 1u);
  BOOST_TEST(donor.server->stats().unauthenticated == 0u);
}

BOOST_AUTO_TEST_CASE(half_a_request_does_not_stretch_the_hello_deadline) {
  ServerOptions o;
  o.hello_timeout = Millis(200);
  test::LocalDonor donor(1 << 20, o);
  auto fd = idle_connection(donor.server->address());
  std::uint8_t part[wire::request_size / 2] = {'M', 'L', 'D', 'Q'};
  iovec iov{part, sizeof part};
  BOOST_TEST_REQUIRE(bool(net::send_all(fd.get(), &iov, 1, Millis(2000))));
  BOOST_TEST(closed_by_donor(fd.get(), Millis(20000)));
}

BOOST_AUTO_TEST_CASE(authenticated_connections_outlive_the_hello_deadline_while_idle) {
  ServerOptions o;
  o.hello_timeout = Millis(200);
  test::LocalDonor donor(4 << 20, o);
  auto client = DonorClient::connect(donor.server->address(), donor.secret);
  BOOST_TEST_REQUIRE(bool(client), (client ? "" : client.error().message));
  auto lease = (*client)->grant(1 << 20);
  BOOST_TEST_REQUIRE(bool(lease));
  auto link = donor.link(*lease);
  // A connection opened after them is cut at the deadline: by then the
  // client's and the link's deadlines have passed as well.
  auto late = idle_connection(donor.server->address());
  BOOST_TEST_REQUIRE(closed_by_donor(late.get(), Millis(20000)));

  std::vector<std::uint8_t> block(4096, 0x5a), back(4096, 0);
  auto w = link.writeback->post_write(0, block.data(), block.size());
  BOOST_TEST_REQUIRE(bool(w));
  BOOST_TEST_REQUIRE(bool(link.writeback->wait(*w)));
  auto r = link.fetch->post_read(0, back.data(), back.size());
  BOOST_TEST_REQUIRE(bool(r));
  BOOST_TEST_REQUIRE(bool(link.fetch->wait(*r)));
  BOOST_TEST((back == block));
  BOOST_TEST(bool((*client)->stats()));
  BOOST_TEST(bool((*client)->release(*lease)));
  BOOST_TEST(donor.server->stats().hello_timeouts == 1u);
}

BOOST_AUTO_TEST_CASE(a_flood_beyond_the_cap_drops_the_oldest_and_lets_a_client_in) {
  ServerOptions o;
  o.hello_timeout = Millis(600000);  // only the cap closes connections here
  o.max_unauthenticated = 8;
  test::LocalDonor donor(4 << 20, o);
  constexpr int flood = 50;
  std::vector<UniqueFd> idle;
  for (int i = 0; i < flood; ++i) idle.push_back(idle_connection(donor.server->address()));

  auto client = DonorClient::connect(donor.server->address(), donor.secret);
  BOOST_TEST_REQUIRE(bool(client), (client ? "" : client.error().message));
  BOOST_TEST_REQUIRE(bool((*client)->grant(1 << 20)));
  // Connections are accepted in order: the client's came last, so every
  // flood connection but the newest seven has been dropped by now.
  for (int i = 0; i < flood - 7; ++i) BOOST_TEST(closed_by_donor(idle[i].get(), Millis(20000)), "connection " << i);
  for (int i = flood - 7; i < flood; ++i) BOOST_TEST(still_open(idle[i].get()), "connection " << i);
  auto st = donor.server->stats();
  BOOST_TEST(st.evicted == static_cast<std::uint64_t>(flood - 7));
  BOOST_TEST(st.unauthenticated == 7u);
}

namespace {

// A donor server in a child process whose descriptor limit leaves room for
// only a few connections, so that the test process keeps its own. It prints
// its address, serves until the parent writes to (or closes) its pipe, then
// reports its acceptor's stats.
class CrampedDonor {
 public:
  CrampedDonor(const Secret& secret, int spare_fds) {
    int down[2], up[2];
    BOOST_TEST_REQUIRE(::pipe2(down, O_CLOEXEC) == 0);
    BOOST_TEST_REQUIRE(::pipe2(up, O_CLOEXEC) == 0);
    pid_ = ::fork();
    BOOST_TEST_REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::close(down[1]);
      ::close(up[0]);
      ::_exit(serve(secret, spare_fds, down[0], up[1]));
    }
    ::close(down[0]);
    ::close(up[1]);
    to_child_ = UniqueFd(down[1]);
    from_child_ = UniqueFd(up[0]);
    char line[128] = {};
    BOOST_TEST_REQUIRE(read_for(line, sizeof line - 1) > 0);
    address = line;
  }

  ~CrampedDonor() {
    to_child_.reset();
    from_child_.reset();
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  ServerStats finish() {
    ServerStats st{};
    to_child_.reset();
    BOOST_TEST_REQUIRE(read_for(&st, sizeof st) == static_cast<ssize_t>(sizeof st));
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    BOOST_TEST(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 0);
    return st;
  }

  std::string address;

 private:
  static int serve(const Secret& secret, int spare_fds, int down, int up) {
    auto pool = DonorPool::create(4 << 20, secret);
    if (!pool) return 3;
    ServerOptions o;
    o.transport = TransportKind::tcp;
    o.hello_timeout = Millis(600000);  // only the descriptor limit closes connections here
    o.max_unauthenticated = 100000;
    auto server = DonorServer::start(*pool, o);
    if (!server) return 4;
    int open_fds = 0;
    if (DIR* d = ::opendir("/proc/self/fd")) {
      while (::readdir(d)) ++open_fds;
      ::closedir(d);
    }
    rlimit lim{static_cast<rlim_t>(open_fds + spare_fds), static_cast<rlim_t>(open_fds + spare_fds)};
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) return 5;
    std::string a = (*server)->address();
    if (::write(up, a.data(), a.size()) != static_cast<ssize_t>(a.size())) return 6;
    char b;
    while (::read(down, &b, 1) < 0 && errno == EINTR) {
    }
    ServerStats st = (*server)->stats();
    return ::write(up, &st, sizeof st) == static_cast<ssize_t>(sizeof st) ? 0 : 7;
  }

  // One read of at most n bytes from the child, within 60 s.
  ssize_t read_for(void* dst, std::size_t n) {
    pollfd p{from_child_.get(), POLLIN, 0};
    if (::poll(&p, 1, 60000) <= 0) return -1;
    return ::read(from_child_.get(), dst, n);
  }

  pid_t pid_ = -1;
  UniqueFd to_child_, from_child_;
};

}  // namespace

BOOST_AUTO_TEST_CASE(out_of_descriptors_the_acceptor_makes_room_instead_of_spinning) {
  Secret secret = random_secret();
  CrampedDonor donor(secret, 6);
  constexpr int flood = 40;
  std::vector<UniqueFd> idle;
  for (int i = 0; i < flood; ++i) idle.push_back(idle_connection(donor.address));
  // At the limit, a client that holds the secret still gets its hello and
  // its answer.
  auto client = DonorClient::connect(donor.address, secret);
  BOOST_TEST_REQUIRE(bool(client), (client ? "" : client.error().message));
  BOOST_TEST(bool((*client)->stats()));
  BOOST_TEST(closed_by_donor(idle.front().get(), Millis(20000)));
  auto st = donor.finish();
  BOOST_TEST(st.out_of_fds > 0u);  // the limit was reached, or this test proves nothing
  BOOST_TEST(st.accepted == static_cast<std::uint64_t>(flood + 1));
  // An acceptor that spun would have called accept() without bound; this one
  // makes one call per connection and at most two per time it hit the limit.
  BOOST_TEST(st.accept_calls <= st.accepted + 2 * st.out_of_fds, st.accept_calls << " accept calls");
  BOOST_TEST(st.out_of_fds <= st.accepted, st.out_of_fds << " times out of descriptors");
}
