#define BOOST_TEST_MODULE qmp
#include <boost/test/unit_test.hpp>

// The QMP client against a QEMU the test plays over a socketpair: what "QEMU"
// says is written into the socket before the client reads (the client's
// command ids are 1 for qmp_capabilities, then 2, 3, ...), so that each case
// is one thread and exact; a silence is a timeout, a closed end is a hang-up.

#include "firmware_hooks/qmp.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <string>

using namespace memlend;
using namespace std::chrono_literals;
using namespace std::string_literals;
using qmp::Client;
using qmp::Millis;

namespace {

const std::string greeting =
    R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}})"
    "\r\n";
const std::string capabilities_ok = "{\"return\": {}, \"id\": 1}\r\n";

std::string devices(std::uint64_t size, int id) {
  return R"({"return": [{"type": "virtio-mem", "data": {"memaddr": 4294967296, "node": 0, "requested-size": 0, )"
         R"("size": )" +
         std::to_string(size) + R"(, "max-size": 536870912, "block-size": 2097152, "memdev": "/objects/lent", )"
         R"("id": "vm0"}}], "id": )" +
         std::to_string(id) + "}\r\n";
}

std::string size_changed(std::uint64_t size) {
  return R"({"timestamp": {"seconds": 1, "microseconds": 2}, "event": "MEMORY_DEVICE_SIZE_CHANGE", )"
         R"("data": {"id": "vm0", "size": )" +
         std::to_string(size) + R"(, "qom-path": "/machine/peripheral/vm0/virtio-backend"}})"
                                "\r\n";
}

// The test's end of the socketpair: "QEMU".
struct Peer {
  Peer() { BOOST_TEST_REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0); }
  ~Peer() {
    if (fds[1] >= 0) ::close(fds[1]);
    if (fds[0] >= 0) ::close(fds[0]);
  }
  void say(const std::string& bytes) {
    BOOST_TEST_REQUIRE(::write(fds[1], bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  }
  // The end of what "QEMU" says; what the client sends still goes through.
  void finish() { ::shutdown(fds[1], SHUT_WR); }
  // Hands the client's end over: the Client closes it.
  int client_end() { return std::exchange(fds[0], -1); }
  // What the client sent so far.
  std::string heard() {
    std::string all;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fds[1], buf, sizeof buf, MSG_DONTWAIT)) > 0) all.append(buf, static_cast<std::size_t>(n));
    return all;
  }
  int fds[2] = {-1, -1};
};

Client connected(Peer& peer, qmp::Limits limits = {}) {
  peer.say(greeting + capabilities_ok);
  auto c = Client::over(peer.client_end(), 2s, limits);
  BOOST_TEST_REQUIRE(static_cast<bool>(c), (c ? "" : c.error().message));
  return std::move(*c);
}

bool printable_line(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return !s.empty();
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_handshake_a_command_and_the_events_read_meanwhile) {
  Peer peer;
  Client c = connected(peer);
  BOOST_TEST(c.greeting()["version"]["qemu"]["major"] == 7);
  // An event, then the late answer to a command that timed out, then ours.
  peer.say(size_changed(1 << 20) + "{\"return\": {}, \"id\": 99}\r\n" + devices(1 << 20, 2));
  auto size = c.memory_device_size("vm0");
  BOOST_TEST_REQUIRE(static_cast<bool>(size), (size ? "" : size.error().message));
  BOOST_TEST(*size == 1u << 20);
  auto events = c.take_events();
  BOOST_TEST_REQUIRE(events.size() == 1u);
  BOOST_TEST(events[0].name == "MEMORY_DEVICE_SIZE_CHANGE");
  BOOST_TEST(events[0].data["size"] == 1 << 20);
  std::string sent = peer.heard();
  BOOST_TEST(sent.find(R"({"execute":"qmp_capabilities","id":1})") != std::string::npos, sent);
  BOOST_TEST(sent.find(R"({"execute":"query-memory-devices","id":2})") != std::string::npos, sent);
}

BOOST_AUTO_TEST_CASE(qemus_error_is_refused_with_its_class_and_description_on_one_line) {
  Peer peer;
  Client c = connected(peer);
  peer.say(R"({"error": {"class": "GenericError", "desc": "no\nsuch \u001b[31mdevice"}, "id": 2})" "\n");
  auto r = c.execute("qom-get", {{"path", "/machine/peripheral/nope"}, {"property", "size"}});
  BOOST_TEST_REQUIRE(!r);
  BOOST_TEST((r.error().code == ErrorCode::refused));
  BOOST_TEST(r.error().message.find("GenericError") != std::string::npos, r.error().message);
  BOOST_TEST(printable_line(r.error().message), r.error().message);
}

BOOST_AUTO_TEST_CASE(set_requested_size_asks_with_qom_set_and_waits_for_the_size) {
  Peer peer;
  Client c = connected(peer);
  // qom-set done; the guest has plugged half; QEMU tells of the rest.
  peer.say("{\"return\": {}, \"id\": 2}\n" + devices(128 << 20, 3) + size_changed(256 << 20));
  auto done = c.set_requested_size("vm0", 256 << 20, 5s);
  BOOST_TEST(static_cast<bool>(done), (done ? "" : done.error().message));
  std::string sent = peer.heard();
  const std::string request =
      R"("arguments":{"path":"/machine/peripheral/vm0","property":"requested-size","value":268435456})";
  BOOST_TEST(sent.find(request) != std::string::npos, sent);
}

BOOST_AUTO_TEST_CASE(a_size_never_reached_is_a_timeout_at_the_deadline) {
  Peer peer;
  Client c = connected(peer);
  peer.say("{\"return\": {}, \"id\": 2}\n" + devices(0, 3));
  auto start = std::chrono::steady_clock::now();
  auto done = c.set_requested_size("vm0", 256 << 20, 300ms);
  auto took = std::chrono::steady_clock::now() - start;
  BOOST_TEST_REQUIRE(!done);
  BOOST_TEST((done.error().code == ErrorCode::timed_out), done.error().message);
  BOOST_TEST((took >= 300ms && took < 3s));
}

BOOST_AUTO_TEST_CASE(silence_is_a_timeout_and_a_hang_up_is_unavailable) {
  Peer peer;
  Client c = connected(peer);
  auto start = std::chrono::steady_clock::now();
  auto r = c.execute("query-status", nullptr, 200ms);
  BOOST_TEST_REQUIRE(!r);
  BOOST_TEST((r.error().code == ErrorCode::timed_out), r.error().message);
  BOOST_TEST((std::chrono::steady_clock::now() - start < 2s));
  peer.say("{\"return\": {\"stat");  // cut short
  peer.finish();
  r = c.execute("query-status", nullptr, 2s);
  BOOST_TEST_REQUIRE(!r);
  BOOST_TEST((r.error().code == ErrorCode::unavailable), r.error().message);
  // And so is every call after it, at once.
  BOOST_TEST((c.memory_device_size("vm0", 10s).error().code == ErrorCode::unavailable));
}

BOOST_AUTO_TEST_CASE(no_greeting_no_client) {
  for (std::string first : {std::string("{\"return\": {}}\n"), std::string("SSH-2.0-OpenSSH_9.2\r\n"),
                            std::string("\n"), std::string(2000, 'x') + "\n"}) {
    Peer peer;
    peer.say(first);
    qmp::Limits limits;
    limits.max_line = 1000;
    auto c = Client::over(peer.client_end(), 1s, limits);
    BOOST_TEST_REQUIRE(!c);
    BOOST_TEST(printable_line(c.error().message), c.error().message);
  }
  Peer silent;
  auto c = Client::over(silent.client_end(), 100ms);
  BOOST_TEST((!c && c.error().code == ErrorCode::timed_out));
}

// Each line is junk for a reason of its own; each fails the call that reads
// it as invalid input, and the next call reads on past it.
BOOST_AUTO_TEST_CASE(junk_lines_are_errors_and_what_follows_them_is_read) {
  const std::string junk[] = {
      "not json",
      "[1, 2, 3]",
      "{}",
      "\"return\"",
      std::string("{\"return\": \"\xff\xfe\", \"id\": 2}"),
      "{\"return\": {}, \0 \"id\": 2}"s,
      std::string(5000, '[') + std::string(5000, ']'),
      "{\"error\": \"no class\", \"id\": 2}",
      "{\"error\": {\"class\": 1, \"desc\": []}, \"id\": 2}",
      "{\"event\": 7}",
      "{\"QMP\": 3}",
      "{\"return\": 1e999999, \"id\": 2}",
      "{\"return\": {}, \"id\": 2",
  };
  std::uint64_t id = 2;
  Peer peer;
  Client c = connected(peer);
  for (const auto& line : junk) {
    // Junk, then the real answer: the junk fails one call; the answer to it,
    // read by the next call, is passed over as a late one.
    peer.say(line + "\r\n" + devices(2 << 20, static_cast<int>(id)));
    auto r = c.memory_device_size("vm0", 1s);
    BOOST_TEST_REQUIRE(!r, line.substr(0, 60));
    BOOST_TEST((r.error().code == ErrorCode::invalid_input), r.error().message);
    BOOST_TEST(printable_line(r.error().message), r.error().message);
    BOOST_TEST(r.error().message.size() < 400u);
    ++id;
    peer.say(devices(3 << 20, static_cast<int>(id)));
    auto next = c.memory_device_size("vm0", 1s);
    BOOST_TEST_REQUIRE(static_cast<bool>(next), (next ? "" : next.error().message));
    BOOST_TEST(*next == 3u << 20);
    ++id;
  }
}

BOOST_AUTO_TEST_CASE(answers_of_the_wrong_shape_are_invalid_input) {
  const std::string answers[] = {
      R"({"return": {"size": 1}, "id": ID})",
      R"({"return": [{"type": "virtio-mem", "data": {"id": "vm0", "size": "big"}}], "id": ID})",
      R"({"return": [{"type": "virtio-mem", "data": {"id": "vm0", "size": -1}}], "id": ID})",
      R"({"return": [{"type": "virtio-mem", "data": {"id": "vm0", "size": 1.5}}], "id": ID})",
      R"({"return": [{"type": "virtio-mem", "data": {"id": "vm0"}}], "id": ID})",
      R"({"return": [5, null, {"data": 3}, {"data": {"id": 7}}], "id": ID})",
  };
  int id = 2;
  Peer peer;
  Client c = connected(peer);
  for (std::string a : answers) {
    a.replace(a.find("ID"), 2, std::to_string(id++));
    peer.say(a + "\n");
    auto r = c.memory_device_size("vm0", 1s);
    BOOST_TEST_REQUIRE(!r, a);
    BOOST_TEST(printable_line(r.error().message), r.error().message);
  }
}

BOOST_AUTO_TEST_CASE(a_line_longer_than_the_limit_ends_the_connection) {
  Peer peer;
  qmp::Limits limits;
  limits.max_line = 4096;
  Client c = connected(peer, limits);
  // Without a newline: the client must not wait for one for ever, nor store it all.
  peer.say("{\"return\": \"" + std::string(100000, 'a'));
  auto r = c.execute("query-status", nullptr, 2s);
  BOOST_TEST_REQUIRE(!r);
  BOOST_TEST((r.error().code == ErrorCode::invalid_input), r.error().message);
  peer.say("\"}\n{\"return\": {}, \"id\": 3}\n");
  BOOST_TEST((c.execute("query-status", nullptr, 1s).error().code == ErrorCode::unavailable));
}

BOOST_AUTO_TEST_CASE(events_nobody_takes_are_bounded) {
  Peer peer;
  qmp::Limits limits;
  limits.max_events = 4;
  Client c = connected(peer, limits);
  std::string many;
  for (int i = 1; i <= 10; ++i) many += size_changed(static_cast<std::uint64_t>(i) << 20);
  peer.say(many + "{\"return\": {}, \"id\": 2}\n");
  BOOST_TEST_REQUIRE(static_cast<bool>(c.execute("query-status")));
  auto events = c.take_events();
  BOOST_TEST_REQUIRE(events.size() == 4u);
  BOOST_TEST(events.front().data["size"] == 7 << 20);
  BOOST_TEST(events.back().data["size"] == 10 << 20);
}

BOOST_AUTO_TEST_CASE(connect_waits_for_the_socket_until_its_timeout) {
  auto start = std::chrono::steady_clock::now();
  auto c = Client::connect("/nonexistent-memlend-qmp.sock", 200ms);
  BOOST_TEST_REQUIRE(!c);
  BOOST_TEST((c.error().code == ErrorCode::timed_out), c.error().message);
  BOOST_TEST((std::chrono::steady_clock::now() - start >= 200ms));
  auto too_long = Client::connect(std::string(200, 'x'), 200ms);
  BOOST_TEST((!too_long && too_long.error().code == ErrorCode::invalid_input));
}

// Random bytes after a good handshake, many times over: every call ends, with
// a value or one printable line.
BOOST_AUTO_TEST_CASE(random_bytes_never_crash_or_hang_the_client) {
  std::mt19937_64 rng(20240601);
  const std::string alphabet = "{}[]\":,\\ \n\r0123456789-+.eEtrufalsn" "returnideventQMPdatasize";
  for (int round = 0; round < 300; ++round) {
    Peer peer;
    qmp::Limits limits;
    limits.max_line = 256;
    limits.max_depth = 6;
    Client c = connected(peer, limits);
    std::string bytes(rng() % 2000, '\0');
    for (auto& b : bytes) b = rng() % 4 ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng());
    peer.say(bytes);
    peer.finish();
    auto start = std::chrono::steady_clock::now();
    auto size = c.memory_device_size("vm0", 1s);
    auto set = c.set_requested_size("vm0", 1 << 20, 1s);
    if (!size) BOOST_TEST(printable_line(size.error().message), size.error().message);
    if (!set) BOOST_TEST(printable_line(set.error().message), set.error().message);
    // The stream ended: nothing is waited for.
    BOOST_TEST((std::chrono::steady_clock::now() - start < 1s));
  }
}
