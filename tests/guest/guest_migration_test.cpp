// Issue 13's migration on real nodes: memlend moves a real guest that needs
// CPU its node lacks to a node that has it, through the two nodes' agents,
// with no scenario. A controller that knows no hosts and two agents on the
// qemu platform, each in a network namespace of its own. Host A runs a QEMU
// guest (TCG, 3 vCPUs); B has no VM and takes migrations in through its
// incoming program. A's CPU is busy (its pressure says so), so the guest
// wants all its vCPUs, more than A has: the controller decides to move it to
// B, B's agent runs its incoming program (which has a QEMU of the same
// devices listen in B's namespace), A's agent migrates the guest there over
// QMP and stops its old QEMU, and only then is the move recorded. The guest
// checks its memory every second: it does so on B after the move.
//
// Every node here is one machine. So A is a small, busy node: its agent runs
// in a mount namespace of its own where /proc/cpuinfo says its CPUs run at
// 100 MHz and /proc/pressure/cpu that tasks wait for them (as a container's
// LXCFS would show a share of a host).
//
// The incoming program is what a node's operator provides (Proxmox's
// `qm start --migratedfrom` prints the same kind of URI): here it asks the
// test, which starts the QEMU and so keeps its console, and prints the URI.
#define BOOST_TEST_MODULE guest_migration
#include <boost/test/unit_test.hpp>

#include "tests/guest/real_nodes.hpp"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace memlend;
using namespace memlend::test;
namespace fs = std::filesystem;
namespace utf = boost::unit_test;

namespace {

boost::test_tools::assertion_result can_run(utf::test_unit_id) {
  std::string why = why_no_real_nodes();
  if (why.empty() && ::access("/proc/pressure/cpu", R_OK) != 0) why = "no /proc/pressure/cpu to stand in for";
  return unless(why);
}

const char* settings = R"({ "settings": { "sample_period_s": 2, "detect_samples": 2, "migrate_after_s": 100000 },
                            "hosts": [] })";

constexpr std::uint64_t boot_mib = 512, device_mib = 256;

struct Cluster : RealNodes {
  Cluster() : RealNodes({"A", "B"}, settings) {
    for (const char* d : {"qmp-A", "qmp-B"}) fs::create_directories(path(d));
    std::ofstream(path("cpuinfo-A")) << "processor\t: 0\ncpu MHz\t\t: 100.000\n\nprocessor\t: 1\ncpu MHz\t\t: 100.000\n";
    std::ofstream(path("pressure-A")) << "some avg10=60.00 avg60=60.00 avg300=60.00 total=100000000\n"
                                          "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
    // B's incoming program: it asks the test for the VM's incoming QEMU and
    // prints where that listens, within a bound.
    std::ofstream(path("incoming")) << "#!/bin/sh\n"
                                       "echo \"$1\" > " << path("incoming-asked") << "\n"
                                       "i=0\n"
                                       "while [ ! -s " << path("incoming-uri") << " ] && [ $i -lt 600 ]; do\n"
                                       "  sleep 0.1; i=$((i+1))\n"
                                       "done\n"
                                       "cat " << path("incoming-uri") << "\n";
    ::chmod(path("incoming").c_str(), 0700);
  }

  void start_agent_a() {
    std::vector<std::string> argv{
        "/usr/bin/unshare", "-m", "/bin/sh", "-c",
        "mount --bind \"$1\" /proc/cpuinfo && mount --bind \"$2\" /proc/pressure/cpu && shift 2 && exec \"$@\"", "sh",
        path("cpuinfo-A"), path("pressure-A")};
    auto a = agent_argv("A", path("qmp-A"));
    argv.insert(argv.end(), a.begin(), a.end());
    agent_a = net.start("A", argv, "agent-A.log", true);
  }

  void start_agent_b() {
    agent_b = net.start("B", agent_argv("B", path("qmp-B"), {"--qemu-incoming", path("incoming")}), "agent-B.log");
  }

  std::vector<nlohmann::json> events(const std::string& kind) const { return RealNodes::events(kind, "web"); }

  int agent_a = 0, agent_b = 0;
};

QemuGuestOptions layout(const std::string& memory_file, const std::string& qmp, const std::string& netns) {
  QemuGuestOptions o;
  o.memory_file = memory_file;
  o.memdev_bytes = device_mib * mib;
  o.base_bytes = boot_mib * mib;
  o.vcpus = 3;
  o.balloon = true;
  o.extra_qmp = {qmp};
  o.launcher = {"/usr/bin/nsenter", "--net=" + netns, "--"};
  o.kernel_args = "memlend.fill_mib=96 memlend.recheck_s=900 memlend.linger_s=900";
  return o;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_guest_short_of_cpu_is_moved_by_memlend_to_a_node_that_has_it, *utf::precondition(can_run)) {
  Cluster c;
  c.start_controller();
  c.start_agent_b();
  c.start_agent_a();
  LocalMemory file_a(device_mib * mib), file_b(device_mib * mib);

  auto started = std::chrono::steady_clock::now();
  auto source = QemuGuest::start(image(), qemu_binary(), layout(file_a.file(), c.path("qmp-A/web.qmp"),
                                                                c.net.netns_path("A")));
  BOOST_TEST_REQUIRE(static_cast<bool>(source), (source ? "" : source.error().message) << c.logs());
  QemuGuest& g = **source;
  std::string filled = g.wait_line("MEMLEND-GUEST ", 300s);
  BOOST_TEST_REQUIRE(filled.find("MEMLEND-GUEST ok") != std::string::npos, tail(g.console()) << c.logs());

  // B's incoming program asks; the test plays the node's VM manager.
  std::unique_ptr<QemuGuest> target;
  std::string target_error;
  std::atomic<bool> stop{false};
  std::thread manager([&] {
    while (!stop && !fs::exists(c.path("incoming-asked"))) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stop) return;
    auto o = layout(file_b.file(), c.path("qmp-B/web.qmp"), c.net.netns_path("B"));
    o.incoming = "tcp:" + c.net.address("B") + ":7499";
    auto t = QemuGuest::start(image(), qemu_binary(), o);
    if (!t) {
      target_error = t.error().message;
      std::ofstream(c.path("incoming-uri")) << "none\n";
      return;
    }
    target = std::move(*t);
    std::ofstream(c.path("incoming-uri")) << o.incoming << "\n";
  });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } join{stop, manager};

  BOOST_TEST_REQUIRE(eventually([&] { return !c.events("vm_migrated").empty(); }, 600s), c.logs());
  BOOST_TEST_MESSAGE("moved " << seconds_since(started) << " s after QEMU started");
  auto moved = c.events("vm_migrated").front();
  BOOST_TEST_MESSAGE("decided: " << moved["reason"].get<std::string>());
  BOOST_TEST(moved["host"] == "B", moved.dump());
  BOOST_TEST(moved["reason"].get<std::string>().find("CPU") != std::string::npos, moved.dump());
  BOOST_TEST(slurp(c.path("incoming-asked")) == "web\n");
  stop = true;
  manager.join();
  BOOST_TEST_REQUIRE(static_cast<bool>(target), target_error << c.logs());

  // The guest runs on B with its memory as it was, and A's QEMU is gone.
  std::string recheck = target->wait_line("MEMLEND-GUEST-RECHECK", 120s);
  BOOST_TEST(recheck.find("MEMLEND-GUEST-RECHECK ok") != std::string::npos, tail(target->console()) << c.logs());
  BOOST_TEST_MESSAGE("on B: " << recheck);
  BOOST_TEST(g.wait_exit(60s) == 0, tail(g.console()));
  BOOST_TEST(c.events("lease_granted").empty(), c.logs());
  auto state = nlohmann::json::parse(run_process({c.bin, "state", "--db", c.path("open.db"), "--json"}, 60).out);
  bool on_b = false;
  for (const auto& v : state["vms"])
    if (v["name"] == "web") on_b = v["host"] == "B";
  BOOST_TEST(on_b, state.dump());
  // Still there, and still B's: no move back, no second move.
  BOOST_TEST(c.events("vm_migrated").size() == 1u, c.logs());

  auto quit = target->qmp().execute("quit");
  BOOST_TEST((quit || quit.error().code == ErrorCode::unavailable));
  c.net.stop(c.agent_a);
  c.net.stop(c.agent_b);
  c.net.stop(c.controller);
}
