#define BOOST_TEST_MODULE replica_client_limits
#include <boost/test/unit_test.hpp>

// The client against a stand-in dqlite on a real loopback socket that answers
// from a script: garbage, a lie about a length, silence, a stream without
// end. Each must cost the client an error, never a crash, hang or unbounded
// allocation.

#include "replica/client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace memlend::replica;
using memlend::ErrorCode;
using memlend::to_string;
using Bytes = std::vector<std::uint8_t>;

namespace {

void put(Bytes& b, std::uint64_t v, int n = 8) {
  for (int i = 0; i < n; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

// A message: `words` in the header whatever the body's real length.
Bytes frame(std::uint8_t type, const Bytes& body, std::uint32_t words) {
  Bytes m;
  put(m, words, 4);
  m.push_back(type);
  m.insert(m.end(), {0, 0, 0});
  m.insert(m.end(), body.begin(), body.end());
  return m;
}
Bytes frame(std::uint8_t type, const Bytes& body) { return frame(type, body, static_cast<std::uint32_t>(body.size() / 8)); }

Bytes words(std::initializer_list<std::uint64_t> ws) {
  Bytes b;
  for (auto w : ws) put(b, w);
  return b;
}

Bytes text(const std::string& s) {
  Bytes b(s.begin(), s.end());
  b.push_back(0);
  while (b.size() % 8) b.push_back(0);
  return b;
}

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

const Bytes welcome = frame(2, words({15000}));

bool read_exact(int fd, void* p, std::size_t n) {
  auto* c = static_cast<char*>(p);
  while (n > 0) {
    ssize_t r = ::read(fd, c, n);
    if (r <= 0) return false;
    c += r, n -= static_cast<std::size_t>(r);
  }
  return true;
}

// Accepts one client; reads its protocol version, then answers each request
// with the next reply of the script (an empty reply: none, and it stays
// silent); `endless` is written over and over after the script instead.
class Peer {
 public:
  explicit Peer(std::vector<Bytes> script, Bytes endless = {}) {
    listen_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    BOOST_TEST_REQUIRE(::bind(listen_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    BOOST_TEST_REQUIRE(::listen(listen_, 1) == 0);
    socklen_t len = sizeof sa;
    ::getsockname(listen_, reinterpret_cast<sockaddr*>(&sa), &len);
    address_ = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));
    thread_ = std::thread([this, script = std::move(script), endless = std::move(endless)] {
      int fd = ::accept(listen_, nullptr, nullptr);
      if (fd < 0) return;
      conn_ = fd;
      std::uint8_t version[8];
      if (!read_exact(fd, version, 8)) return;
      for (const auto& reply : script) {
        std::uint8_t head[8];
        if (!read_exact(fd, head, 8)) return;
        std::uint32_t body = 0;
        std::memcpy(&body, head, 4);
        Bytes skip(static_cast<std::size_t>(body) * 8);
        if (!read_exact(fd, skip.data(), skip.size())) return;
        if (reply.empty()) break;
        if (::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL) < 0) return;
      }
      while (!endless.empty() && ::send(fd, endless.data(), endless.size(), MSG_NOSIGNAL) > 0) ++sent_;
      // Until the client hangs up.
      char sink[256];
      while (::read(fd, sink, sizeof sink) > 0) {
      }
    });
  }
  ~Peer() {
    ::shutdown(listen_, SHUT_RDWR);
    if (conn_ >= 0) ::shutdown(conn_, SHUT_RDWR);
    thread_.join();
    if (conn_ >= 0) ::close(conn_);
    ::close(listen_);
  }
  const std::string& address() const { return address_; }

 private:
  int listen_ = -1;
  std::atomic<int> conn_{-1};
  std::atomic<std::uint64_t> sent_{0};
  std::string address_;
  std::thread thread_;
};

ClientOptions quick() {
  ClientOptions l;
  l.timeout = std::chrono::milliseconds(500);
  l.max_message = 1 << 16;
  l.max_result = 1 << 20;
  return l;
}

// Connects (the peer welcomes), asks for the leader and expects `code`;
// returns the client for more checks.
Client leader_fails(const Peer& peer, ErrorCode code) {
  auto c = Client::connect(peer.address(), quick());
  BOOST_TEST_REQUIRE(bool(c), (c ? "" : c.error().message));
  auto l = c->leader();
  BOOST_TEST_REQUIRE(!l);
  BOOST_TEST(to_string(l.error().code) == to_string(code), l.error().message);
  return std::move(*c);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_silent_peer_costs_a_timeout) {
  Peer peer({Bytes{}});
  auto c = Client::connect(peer.address(), quick());
  BOOST_TEST_REQUIRE(!c);
  BOOST_TEST(to_string(c.error().code) == to_string(ErrorCode::timed_out), c.error().message);
}

BOOST_AUTO_TEST_CASE(a_length_past_the_limit_is_refused_before_it_is_read) {
  Peer peer({frame(2, {}, 0xffffffffu)});
  auto c = Client::connect(peer.address(), quick());
  BOOST_TEST_REQUIRE(!c);
  BOOST_TEST(to_string(c.error().code) == to_string(ErrorCode::invalid_input), c.error().message);
  BOOST_TEST(c.error().message.find("exceeds the limit") != std::string::npos, c.error().message);
}

BOOST_AUTO_TEST_CASE(an_answer_of_the_wrong_type_spends_the_connection) {
  Peer peer({welcome, frame(99, words({1}))});
  Client c = leader_fails(peer, ErrorCode::invalid_input);
  BOOST_TEST(c.spent());
  auto again = c.leader();
  BOOST_TEST_REQUIRE(!again);
  BOOST_TEST(to_string(again.error().code) == to_string(ErrorCode::unavailable), again.error().message);
}

BOOST_AUTO_TEST_CASE(a_body_that_lies_about_its_fields_is_an_error) {
  // A SERVER whose address has no terminating NUL.
  Peer peer({welcome, frame(1, cat(words({2}), Bytes(8, 'x')))});
  leader_fails(peer, ErrorCode::invalid_input);
}

BOOST_AUTO_TEST_CASE(a_message_cut_short_costs_a_timeout) {
  Bytes half = frame(1, words({1, 2, 3}));
  half.resize(12);
  // The peer stays silent after half a message: the deadline ends the wait.
  Peer peer({welcome, half, Bytes{}});
  leader_fails(peer, ErrorCode::timed_out);
}

BOOST_AUTO_TEST_CASE(a_failure_is_a_refusal_and_the_next_request_is_served) {
  Peer peer({welcome, frame(0, cat(words({1}), text("no such thing"))), frame(1, cat(words({3}), text("10.0.0.3:9000")))});
  Client c = leader_fails(peer, ErrorCode::refused);
  BOOST_TEST(c.failure_code() == 1u);
  auto l = c.leader();
  BOOST_TEST_REQUIRE(bool(l), (l ? "" : l.error().message));
  BOOST_TEST(l->id == 3u);
  BOOST_TEST(l->address == "10.0.0.3:9000");
}

BOOST_AUTO_TEST_CASE(rows_without_end_stop_at_the_result_limit) {
  // One column, one integer row, "more follows", for ever.
  Bytes batch = frame(7, cat(cat(words({1}), text("n")), words({1, 42, 0xeeeeeeeeeeeeeeeeULL})));
  Peer peer({welcome}, batch);
  auto c = Client::connect(peer.address(), quick());
  BOOST_TEST_REQUIRE(bool(c), (c ? "" : c.error().message));
  auto rows = c->query("SELECT n FROM t");
  BOOST_TEST_REQUIRE(!rows);
  BOOST_TEST(to_string(rows.error().code) == to_string(ErrorCode::invalid_input), rows.error().message);
  BOOST_TEST(rows.error().message.find("exceed the limit") != std::string::npos, rows.error().message);
}

BOOST_AUTO_TEST_CASE(a_leader_search_that_runs_out_of_time_gives_what_a_member_said) {
  // One member answers that it knows no leader; the other says nothing, and
  // the search's deadline cuts every attempt short of the client's timeout.
  Peer leaderless({welcome, frame(1, cat(words({0}), text("")))});
  Peer silent({Bytes{}});
  auto found = connect_leader({leaderless.address(), silent.address()}, "", std::chrono::milliseconds(300), quick());
  BOOST_TEST_REQUIRE(!found);
  BOOST_TEST(to_string(found.error().code) == to_string(ErrorCode::timed_out), found.error().message);
  BOOST_TEST(found.error().message.find("dqlite " + leaderless.address() + " knows no leader") != std::string::npos,
             found.error().message);
}
