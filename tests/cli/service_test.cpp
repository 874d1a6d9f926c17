#define BOOST_TEST_MODULE cli_service
#include <boost/test/unit_test.hpp>

// `memlend run` as systemd sees it: the notification socket (READY=1,
// WATCHDOG=1, STATUS=, STOPPING=1) and the probes beside /metrics. A real
// process, a real AF_UNIX datagram socket and real HTTP; every wait is a
// bound, and no test asserts how long anything took.

#include "core/health.hpp"
#include "tests/support/child.hpp"
#include "tests/support/datagram_socket.hpp"
#include "tests/support/http_get.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace std::chrono_literals;
using memlend::test::Child;
using memlend::test::make_temp_dir;

namespace {

const std::string bin = MEMLEND_BINARY;
const std::string fig2 = std::string(MEMLEND_SOURCE_DIR) + "/examples/fig2.json";

struct TempDir {
  std::string path = make_temp_dir("service");
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// What systemd listens on: the service's datagrams, one notification each.
class NotifySocket : public memlend::test::DatagramSocket {
 public:
  using DatagramSocket::DatagramSocket;
  // Reads datagrams until one holds `line` (a whole line of it); false when
  // the deadline came first. Every datagram read is kept in `seen`.
  bool wait_for(const std::string& line, std::chrono::seconds within) {
    auto deadline = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < deadline) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      std::string d = next(std::max(left, 1ms));
      if (d.empty()) continue;
      seen.push_back(d);
      if (("\n" + d + "\n").find("\n" + line + "\n") != std::string::npos) return true;
    }
    return false;
  }
  std::vector<std::string> seen;
};

// Starts memlend with NOTIFY_SOCKET (and WATCHDOG_USEC) in its environment,
// as systemd starts a Type=notify service with WatchdogSec=.
std::unique_ptr<Child> start_notified(const std::vector<std::string>& argv, const std::string& socket,
                                      const std::string& dir) {
  ::setenv("NOTIFY_SOCKET", socket.c_str(), 1);
  ::setenv("WATCHDOG_USEC", "2000000", 1);
  auto c = std::make_unique<Child>(argv, Child::Options(dir + "/run"));
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  return c;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "[" + x + "]";
  return s;
}

void run_openssl(const std::string& args) {
  auto r = memlend::test::run_process({"/bin/sh", "-c", "openssl " + args + " 2>/dev/null"}, 60);
  BOOST_TEST_REQUIRE(r.status == 0, "openssl " << args);
}

}  // namespace

BOOST_AUTO_TEST_CASE(run_tells_systemd_it_is_ready_alive_and_how_it_is) {
  TempDir dir;
  NotifySocket sock(dir.path + "/notify");
  auto port = memlend::test::free_loopback_port();
  auto c = start_notified({bin, "run", "--scenario", fig2, "--for", "10h", "--quiet", "--db", dir.path + "/m.db",
                           "--datastore", dir.path + "/ds", "--metrics", "127.0.0.1:" + std::to_string(port)},
                          dir.path + "/notify", dir.path);
  BOOST_TEST_REQUIRE(sock.wait_for("READY=1", 60s), joined(sock.seen) << c->err());
  // The store was open before READY=1, and the actors had answered: ready now.
  auto ready = memlend::test::http_get("127.0.0.1", port, "/readyz");
  BOOST_TEST(ready.status == 200, ready.body);
  BOOST_TEST(ready.body == "ready\n");
  auto health = memlend::test::http_get("127.0.0.1", port, "/healthz");
  BOOST_TEST(health.status == 200);
  BOOST_TEST(health.body == "ok\n");
  BOOST_TEST(memlend::test::http_get("127.0.0.1", port, "/metrics").status == 200);

  // The watchdog is fed again and again, by answers of the actors.
  for (int i = 0; i < 3; ++i) BOOST_TEST_REQUIRE(sock.wait_for("WATCHDOG=1", 30s), joined(sock.seen));
  bool status = false;
  for (const auto& d : sock.seen)
    status = status || d.find("STATUS=controller: 3 of 3 simulated hosts up, ") != std::string::npos;
  BOOST_TEST(status, joined(sock.seen));

  c->stop();
  BOOST_TEST(sock.wait_for("STOPPING=1", 30s), joined(sock.seen));
}

BOOST_AUTO_TEST_CASE(a_controller_with_no_agent_is_alive_but_not_ready) {
  TempDir dir;
  const std::string d = dir.path + "/";
  run_openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ca -keyout " + d + "ca.key -out " + d + "ca.pem");
  run_openssl("req -newkey rsa:2048 -nodes -subj /CN=controller -keyout " + d + "c.key -out " + d + "c.csr");
  run_openssl("x509 -req -days 2 -in " + d + "c.csr -CA " + d + "ca.pem -CAkey " + d + "ca.key -CAcreateserial -out " +
              d + "c.pem");
  std::ofstream(d + "secret") << "a secret of more than sixteen bytes\n";
  ::chmod((d + "secret").c_str(), 0600);
  NotifySocket sock(d + "notify");
  auto port = memlend::test::free_loopback_port();
  auto c = start_notified({bin, "run", "--scenario", fig2, "--for", "10h", "--quiet", "--no-db", "--datastore",
                           d + "ds", "--metrics", "127.0.0.1:" + std::to_string(port), "--listen", "127.0.0.1:0",
                           "--cluster", "c", "--cluster-secret-file", d + "secret", "--tls-ca", d + "ca.pem",
                           "--tls-cert", d + "c.pem", "--tls-key", d + "c.key"},
                          d + "notify", dir.path);
  BOOST_TEST_REQUIRE(sock.wait_for("READY=1", 60s), joined(sock.seen) << c->err());
  bool status = false;
  for (const auto& s : sock.seen) status = status || s.find("STATUS=controller: 0 of 3 agents joined") != std::string::npos;
  BOOST_TEST(status, joined(sock.seen));
  BOOST_TEST(memlend::test::http_get("127.0.0.1", port, "/healthz").status == 200);
  auto ready = memlend::test::http_get("127.0.0.1", port, "/readyz");
  BOOST_TEST(ready.status == 503);
  BOOST_TEST(ready.body == "no agent connected (0 of 3 hosts)\n");
  c->stop();
}

BOOST_AUTO_TEST_CASE(readiness_is_the_store_the_actors_answering_and_an_agent) {
  using memlend::Health;
  using memlend::PulseReading;
  Health h;
  auto t0 = Health::Clock::now();
  BOOST_TEST(h.not_ready(t0).value() == "starting: the store is not open yet");
  h.set_store(Health::Store::open);
  BOOST_TEST(h.not_ready(t0).value() == "starting: the actors have not answered yet");
  h.answered(PulseReading{false, 3, 3, 1}, t0);
  BOOST_TEST(!h.not_ready(t0 + 1s));
  BOOST_TEST(h.status() == "controller: 3 of 3 simulated hosts up, 1 lease active");
  BOOST_TEST(h.not_ready(t0 + Health::alive_within + 2s).value() == "the actors have not answered for 7 s");
  h.answered(PulseReading{true, 3, 0, 0}, t0 + 10s);
  BOOST_TEST(h.not_ready(t0 + 10s).value() == "no agent connected (0 of 3 hosts)");
  h.answered(PulseReading{true, 3, 2, 2}, t0 + 11s);
  BOOST_TEST(!h.not_ready(t0 + 11s));
  BOOST_TEST(h.status() == "controller: 2 of 3 agents joined, 2 leases active");
  h.stopping();
  BOOST_TEST(h.not_ready(t0 + 11s).value() == "stopping");
}
