#define BOOST_TEST_MODULE qemu_platform
#include <boost/test/unit_test.hpp>

// The `qemu` NodePlatform against real QEMU guests (tests/support/qemu_guest):
// each guest's second QMP socket is NAME.qmp in the test's directory, as an
// operator gives memlend one per VM. Guests boot under TCG, so one case walks
// the whole life of a node: a stale socket, a VM read, plugged and unplugged,
// a second VM that comes and goes, a migration that cannot start, and one that
// completes to a QEMU waiting for it on another host (a network namespace of
// its own). The cases without a guest run anywhere.

#include "firmware_hooks/qemu.hpp"
#include "tests/cluster/netns.hpp"
#include "tests/guest/guest_common.hpp"
#include "tests/support/child.hpp"

#include <nlohmann/json.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <map>
#include <thread>

using namespace memlend;
using namespace memlend::test;
using platform::MigrationTarget;
using platform::NodePlatform;
using platform::NodeReading;
using platform::QemuOptions;
using platform::VmReading;
using platform::make_qemu;

namespace {

struct Node {
  explicit Node(const std::string& dir) {
    QemuOptions o;
    o.qmp_dir = dir;
    o.command_timeout = 20s;  // TCG on shared cores answers slowly
    o.plug_timeout = 180s;
    o.migrate_timeout = 300s;
    o.stats_interval = std::chrono::seconds(1);
    o.log = [this](const std::string& m) {
      BOOST_TEST_MESSAGE("log: " << m);
      logged += m + "\n";
    };
    platform = make_qemu(o);
  }
  NodeReading read() {
    auto r = platform->read();
    BOOST_TEST_REQUIRE(static_cast<bool>(r), (r ? "" : r.error().message));
    return std::move(*r);
  }
  std::unique_ptr<NodePlatform> platform;
  std::string logged;
};

const VmReading* find(const NodeReading& r, const std::string& name) {
  for (const auto& vm : r.vms)
    if (vm.name == name) return &vm;
  return nullptr;
}

std::string names(const NodeReading& r) {
  std::string out;
  for (const auto& vm : r.vms) out += vm.name + " ";
  return out;
}

// A socket file nothing listens on any more: what a killed QEMU leaves.
void make_stale_socket(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  BOOST_TEST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  ::close(fd);
}

// A TCP port nothing listens on now.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  BOOST_TEST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  BOOST_TEST_REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

QemuGuestOptions layout(const std::string& file, const std::string& qmp, bool balloon) {
  QemuGuestOptions o;
  o.memory_file = file;
  o.memdev_bytes = 512 * mib;
  o.base_bytes = 256 * mib;
  o.balloon = balloon;
  o.extra_qmp = {qmp};
  o.kernel_args = "memlend.fill_mib=16 memlend.passes=1 memlend.linger_s=1200";
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_missing_directory_is_unavailable) {
  TempDir dir("qemu-platform");
  QemuOptions o;
  o.qmp_dir = dir.path() + "/none";
  auto r = make_qemu(o)->read();
  BOOST_TEST_REQUIRE(!r);
  BOOST_TEST((r.error().code == ErrorCode::unavailable), r.error().message);
  auto a = make_qemu(o)->attach("vm", platform::LentMemory{"l", "d", "", 128});
  BOOST_TEST_REQUIRE(!a);
  BOOST_TEST((a.error().code == ErrorCode::refused), a.error().message);
}

BOOST_AUTO_TEST_CASE(a_stale_socket_is_skipped_and_told_once) {
  TempDir dir("qemu-platform");
  make_stale_socket(dir.path() + "/dead.qmp");
  Node node(dir.path());
  auto r = node.read();
  BOOST_TEST(r.vms.empty());
  BOOST_TEST(r.host.memory_mib > 0);
  BOOST_TEST(node.logged.find("'dead' skipped") != std::string::npos, node.logged);
  node.read();
  BOOST_TEST(std::count(node.logged.begin(), node.logged.end(), '\n') == 1, node.logged);
  auto d = node.platform->detach("dead", platform::LentMemory{"l", "d", "", 128});
  BOOST_TEST_REQUIRE(!d);
  BOOST_TEST((d.error().code == ErrorCode::unavailable), d.error().message);
}

// A socket another client holds: QEMU leaves the connection in its backlog and
// never greets. The first read waits connect_timeout for it; the next ones
// leave it out without waiting, until retry_interval has passed.
BOOST_AUTO_TEST_CASE(a_socket_that_never_greets_costs_one_wait) {
  TempDir dir("qemu-platform");
  std::string path = dir.path() + "/busy.qmp";
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  BOOST_TEST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  BOOST_TEST_REQUIRE(::listen(fd, 4) == 0);
  QemuOptions o;
  o.qmp_dir = dir.path();
  o.connect_timeout = 300ms;
  std::string logged;
  o.log = [&](const std::string& m) { logged += m + "\n"; };
  auto node = make_qemu(o);
  auto t0 = std::chrono::steady_clock::now();
  auto first = node->read();
  BOOST_TEST_REQUIRE(static_cast<bool>(first), (first ? "" : first.error().message));
  BOOST_TEST(first->vms.empty());
  BOOST_TEST(seconds_since(t0) >= 0.3);
  BOOST_TEST(logged.find("'busy' skipped") != std::string::npos, logged);
  auto t1 = std::chrono::steady_clock::now();
  BOOST_TEST_REQUIRE(static_cast<bool>(node->read()));
  BOOST_TEST(seconds_since(t1) < 0.25);
  ::close(fd);
}

// A "QEMU" the test plays on a socket: greets, then answers each command with
// what `answers` holds for it (a QMP error for the rest), wrong as it may be.
struct FakeQemu {
  FakeQemu(const std::string& path, std::map<std::string, nlohmann::json> answers) : answers(std::move(answers)) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    BOOST_TEST_REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    BOOST_TEST_REQUIRE(::listen(fd, 4) == 0);
    thread = std::thread([this] { serve(); });
  }
  ~FakeQemu() {
    ::shutdown(fd, SHUT_RDWR);
    thread.join();
    ::close(fd);
  }
  void serve() {
    int c = ::accept(fd, nullptr, nullptr);
    if (c < 0) return;
    std::string out = R"({"QMP": {"version": {}, "capabilities": []}})" "\n", in;
    char buf[4096];
    for (;;) {
      if (!out.empty() && ::write(c, out.data(), out.size()) < 0) break;
      out.clear();
      ssize_t n = ::read(c, buf, sizeof buf);
      if (n <= 0) break;
      in.append(buf, static_cast<std::size_t>(n));
      for (auto end = in.find('\n'); end != std::string::npos; end = in.find('\n')) {
        auto request = nlohmann::json::parse(in.substr(0, end));
        in.erase(0, end + 1);
        std::string command = request["execute"];
        auto it = answers.find(command);
        nlohmann::json reply = it != answers.end()
                                   ? nlohmann::json{{"return", it->second}}
                                   : nlohmann::json{{"error", {{"class", "GenericError"}, {"desc", "no " + command}}}};
        reply["id"] = request["id"];
        out += reply.dump() + "\n";
      }
    }
    ::close(c);
  }
  std::map<std::string, nlohmann::json> answers;
  int fd = -1;
  std::thread thread;
};

BOOST_AUTO_TEST_CASE(answers_of_the_wrong_shape_leave_a_vm_out_or_its_readings_absent) {
  TempDir dir("qemu-platform");
  using nlohmann::json;
  json ok = json::object();
  FakeQemu wrong(dir.path() + "/wrong.qmp", {{"qmp_capabilities", ok}, {"query-status", {{"running", "yes"}}}});
  FakeQemu odd(dir.path() + "/odd.qmp",
               {{"qmp_capabilities", ok},
                {"query-status", {{"running", true}, {"status", 7}}},
                {"query-memory-size-summary", {{"base-memory", 1u << 30}}},
                {"query-cpus-fast", "many"},
                {"query-memory-devices", json::array({json{{"type", "virtio-mem"}, {"data", {{"id", 5}}}}, 3})},
                {"query-balloon", {{"actual", -1}}},
                {"qom-list", json::array({json{{"name", 1}, {"type", "child<virtio-balloon-pci>"}}})},
                {"query-migrate", {{"status", json::array()}}}});
  Node node(dir.path());
  auto r = node.read();
  BOOST_TEST_REQUIRE(r.vms.size() == 1u, names(r));
  const VmReading& v = r.vms[0];
  BOOST_TEST(v.name == "odd");
  BOOST_TEST(v.memory_mib == 1024);
  BOOST_TEST(v.vcpus == 0);
  BOOST_TEST(v.plugged_mib == 0);
  BOOST_TEST(!v.balloon_mib.has_value());
  BOOST_TEST(node.logged.find("'wrong' left out") != std::string::npos, node.logged);
  auto a = node.platform->attach("odd", platform::LentMemory{"l", "d", "", 128});
  BOOST_TEST_REQUIRE(!a);
  BOOST_TEST((a.error().code == ErrorCode::refused), a.error().message);
  auto m = node.platform->migrate("odd", MigrationTarget{"x", "tcp:127.0.0.1:1"});
  BOOST_TEST_REQUIRE(!m);
  BOOST_TEST_MESSAGE("migrate: " << m.error().message);
}

BOOST_AUTO_TEST_CASE(a_node_of_real_guests_is_read_plugged_and_migrated, *boost::unit_test::precondition(can_boot)) {
  TempDir dir("qemu-platform");
  Node node(dir.path());
  make_stale_socket(dir.path() + "/stale.qmp");
  LocalMemory file_a(512 * mib), file_c(512 * mib);
  auto started = std::chrono::steady_clock::now();
  // VM a's node and the node it migrates to, each a network namespace of its
  // own: the migration crosses a link between hosts, not loopback. Their
  // QMP sockets and memory files are on the one file system, as a node's
  // agent sees its own.
  if (std::string why = netns_unavailable(); !why.empty()) {
    BOOST_TEST_MESSAGE("skipped: " << why);
    return;
  }
  NetnsCluster hosts({"src", "dst"});
  auto in_netns = [&](const std::string& host) {
    return std::vector<std::string>{"/usr/bin/nsenter", "--net=" + hosts.netns_path(host), "--"};
  };

  auto on_src = layout(file_a.file(), dir.path() + "/a.qmp", true);
  on_src.launcher = in_netns("src");
  auto a = QemuGuest::start(image(), qemu_binary(), on_src);
  BOOST_TEST_REQUIRE(static_cast<bool>(a), (a ? "" : a.error().message));
  QemuGuest& ga = **a;
  std::string line = ga.wait_line("MEMLEND-GUEST ", 300s);
  BOOST_TEST_REQUIRE(line.find("MEMLEND-GUEST ok") != std::string::npos, tail(ga.console()));
  BOOST_TEST_MESSAGE("guest a up " << seconds_since(started) << " s after QEMU started");

  // An operator's first command on the node, before the platform below
  // takes the VM's QMP socket (QEMU serves one client on it).
  auto inspect = run_process({MEMLEND_BINARY, "inspect", "--platform", "qemu", "--qmp-dir", dir.path(), "--interval",
                              "0.5s", "--json"},
                             120);
  BOOST_TEST_REQUIRE(inspect.status == 0, inspect.err);
  auto seen = nlohmann::json::parse(inspect.out);
  BOOST_TEST(seen["backend"] == "qemu");
  BOOST_TEST(seen["host"]["memory_mib"].get<std::int64_t>() > 0);
  BOOST_TEST_REQUIRE(seen["vms"].size() == 1u, inspect.out);
  BOOST_TEST(seen["vms"][0]["name"] == "a");
  BOOST_TEST(seen["vms"][0]["memory_mib"] == 256);
  BOOST_TEST(seen["vms"][0]["pluggable_mib"] == 512);
  // Its guest's balloon statistics judge it: with 256 MiB of boot memory it
  // may well have less available than the margin (256 MiB), and then wants
  // a step (256 MiB) more; with the margin available, or before its first
  // statistics came, what it has.
  auto demand = seen["vms"][0]["demand"]["memory_mib"].get<std::int64_t>();
  const auto& seen_available = seen["vms"][0]["guest_available_mib"];
  if (seen_available.is_number() && seen_available.get<std::int64_t>() >= 256)
    BOOST_TEST(demand == 256, inspect.out);
  else
    BOOST_TEST((demand == 256 || demand == 512), inspect.out);
  BOOST_TEST(!seen["vms"][0]["demand"]["reason"].get<std::string>().empty());
  BOOST_TEST(inspect.err.find("stale") != std::string::npos, inspect.err);

  // Read: its memory, its device, its balloon, its QEMU's CPU time growing.
  auto r1 = node.read();
  const VmReading* va = find(r1, "a");
  BOOST_TEST_REQUIRE(va != nullptr, names(r1));
  BOOST_TEST(r1.vms.size() == 1u, names(r1));
  BOOST_TEST(va->running);
  BOOST_TEST(va->memory_mib == 256);
  BOOST_TEST(va->vcpus == 1);
  BOOST_TEST(va->plugged_mib == 0);
  BOOST_TEST(va->pluggable_mib == 512);
  BOOST_TEST(va->balloon_mib.value_or(-1) == 256);
  BOOST_TEST(va->rss_mib.value_or(0) > 0);
  BOOST_TEST_REQUIRE(va->cpu_s.has_value());
  double cpu_before = *va->cpu_s;
  // The guest's balloon driver reports, once QEMU asked it to (every second here).
  BOOST_TEST(node.logged.find("no balloon statistics") == std::string::npos, node.logged);
  std::optional<std::int64_t> available;
  for (auto deadline = std::chrono::steady_clock::now() + 60s; !available && std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(200ms))
    if (auto r = node.read(); find(r, "a")) available = find(r, "a")->guest_available_mib;
  BOOST_TEST_REQUIRE(available.has_value());
  BOOST_TEST(*available > 0);
  BOOST_TEST(*available < 256);
  BOOST_TEST_MESSAGE("a: rss " << va->rss_mib.value_or(-1) << " MiB, cpu " << cpu_before << " s, throttled "
                               << va->cpu_throttled_s.value_or(-1) << " s");
  // An idle guest under TCG may use less than /proc's 10 ms tick in a while:
  // its CPU time is read until it grows, within a bound.
  double cpu_after = cpu_before;
  for (auto deadline = std::chrono::steady_clock::now() + 60s;
       cpu_after <= cpu_before && std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(500ms)) {
    auto r2 = node.read();
    BOOST_TEST_REQUIRE(find(r2, "a") != nullptr);
    cpu_after = find(r2, "a")->cpu_s.value_or(0);
  }
  BOOST_TEST(cpu_after > cpu_before);

  // Plug and unplug through the platform; beyond the device is refused.
  platform::LentMemory lease{"lease-1", "donor", "", 128};
  auto attached = node.platform->attach("a", lease);
  BOOST_TEST_REQUIRE(static_cast<bool>(attached), (attached ? "" : attached.error().message) << tail(ga.console()));
  BOOST_TEST(find(node.read(), "a")->plugged_mib == 128);
  BOOST_TEST(*ga.qmp().memory_device_size("vm0") == 128 * mib);
  auto too_much = node.platform->attach("a", platform::LentMemory{"lease-2", "donor", "", 512});
  BOOST_TEST_REQUIRE(!too_much);
  BOOST_TEST((too_much.error().code == ErrorCode::refused), too_much.error().message);
  auto detached = node.platform->detach("a", lease);
  BOOST_TEST_REQUIRE(static_cast<bool>(detached), (detached ? "" : detached.error().message) << tail(ga.console()));
  BOOST_TEST(find(node.read(), "a")->plugged_mib == 0);
  auto again = node.platform->detach("a", lease);
  BOOST_TEST_REQUIRE(!again);
  BOOST_TEST((again.error().code == ErrorCode::refused), again.error().message);
  auto ballooned = node.platform->set_balloon("a", 200);
  BOOST_TEST(static_cast<bool>(ballooned), (ballooned ? "" : ballooned.error().message));

  // A second VM appears, and vanishes when its QEMU is killed.
  {
    auto b = QemuGuest::start(image(), qemu_binary(), layout(file_c.file(), dir.path() + "/b.qmp", false));
    BOOST_TEST_REQUIRE(static_cast<bool>(b), (b ? "" : b.error().message));
    auto r = node.read();
    BOOST_TEST(r.vms.size() == 2u, names(r));
    BOOST_TEST_REQUIRE(find(r, "b") != nullptr, names(r));
    BOOST_TEST(!find(r, "b")->balloon_mib.has_value());
    auto no_balloon = node.platform->set_balloon("b", 200);
    BOOST_TEST_REQUIRE(!no_balloon);
    BOOST_TEST((no_balloon.error().code == ErrorCode::refused), no_balloon.error().message);
  }
  auto r3 = node.read();
  BOOST_TEST(find(r3, "b") == nullptr, names(r3));
  BOOST_TEST_REQUIRE(find(r3, "a") != nullptr, names(r3));
  BOOST_TEST(node.logged.find("'stale' skipped") != std::string::npos, node.logged);

  // A migration to nobody is cancelled, and the VM runs on here.
  auto nowhere = node.platform->migrate("a", MigrationTarget{"elsewhere", "tcp:127.0.0.1:" + std::to_string(free_port())});
  BOOST_TEST_REQUIRE(!nowhere);
  BOOST_TEST((nowhere.error().code == ErrorCode::refused), nowhere.error().message);
  BOOST_TEST_MESSAGE("migration to nobody: " << nowhere.error().message);
  BOOST_TEST(find(node.read(), "a")->running);

  // A live migration, with memory plugged, to a QEMU of the same devices
  // waiting for it: the source stops, the target runs with what was plugged.
  BOOST_TEST_REQUIRE(static_cast<bool>(node.platform->attach("a", lease)));
  auto incoming = layout(file_c.file(), dir.path() + "/c.qmp", true);
  std::string uri = "tcp:" + hosts.address("dst") + ":" + std::to_string(free_port());
  incoming.incoming = uri;
  incoming.launcher = in_netns("dst");
  auto c = QemuGuest::start(image(), qemu_binary(), incoming);
  BOOST_TEST_REQUIRE(static_cast<bool>(c), (c ? "" : c.error().message));
  auto waiting = node.read();
  BOOST_TEST_REQUIRE(find(waiting, "c") != nullptr, names(waiting));
  BOOST_TEST(!find(waiting, "c")->running);
  auto migrating = std::chrono::steady_clock::now();
  auto moved = node.platform->migrate("a", MigrationTarget{"c-host", uri});
  BOOST_TEST_REQUIRE(static_cast<bool>(moved), (moved ? "" : moved.error().message));
  BOOST_TEST_MESSAGE("migrated in " << seconds_since(migrating) << " s");
  // The source says "completed" once it has sent the last page; the target
  // still loads it before it runs, so the test waits (bounded) for that.
  auto r4 = node.read();
  for (auto deadline = std::chrono::steady_clock::now() + 60s;
       find(r4, "c") != nullptr && !find(r4, "c")->running && std::chrono::steady_clock::now() < deadline;
       r4 = node.read())
    std::this_thread::sleep_for(100ms);
  BOOST_TEST_REQUIRE(find(r4, "c") != nullptr);
  BOOST_TEST(find(r4, "c")->running);
  BOOST_TEST(find(r4, "c")->plugged_mib == 128);
  // Its old QEMU quit once the target had it all, as Proxmox's and libvirt's do.
  BOOST_TEST(ga.wait_exit(30s) == 0, tail(ga.console()));
  BOOST_TEST(find(node.read(), "a") == nullptr);

  // A migration that did not happen is undone at the target: its incoming
  // QEMU stops. One that happened is no longer the target's to undo.
  auto waiting_d = layout(file_a.file(), dir.path() + "/d.qmp", true);
  waiting_d.incoming = "tcp:" + hosts.address("dst") + ":" + std::to_string(free_port());
  waiting_d.launcher = in_netns("dst");
  auto d = QemuGuest::start(image(), qemu_binary(), waiting_d);
  BOOST_TEST_REQUIRE(static_cast<bool>(d), (d ? "" : d.error().message));
  node.platform->cancel_receive("d");
  BOOST_TEST((*d)->wait_exit(30s) == 0);
  node.platform->cancel_receive("c");
  BOOST_TEST(find(node.read(), "c")->running);
  BOOST_TEST_MESSAGE("the whole node took " << seconds_since(started) << " s");
}
