// Issue 13's whole chain with a real guest and no scenario: a controller that
// knows no hosts and two agents on the qemu platform, each in a network
// namespace of its own. Host A runs a QEMU guest (TCG) whose virtio-mem memory
// is the file A's agent serves; host B has no VM and lends. The guest
// allocates beyond its boot memory and waits; only its balloon statistics
// tell the host. A's agent infers the need, the controller lends from B over
// TCP, A's agent plugs the lease through QMP, the guest writes and checks
// every byte it allocated on it, frees it, and memlend takes it back: the
// surplus is seen, the memory unplugged and the lease released to B.
//
// Every node here is one machine, whose kernel would tell A's agent it has
// gigabytes available, and memlend grows a VM from its own host first. So A
// is a full node: its agent runs in a mount namespace of its own where
// /proc/meminfo says next to nothing is available (as a container's LXCFS would),
// and QEMU joins that namespace to map the memory file A's agent mounts there.
#define BOOST_TEST_MODULE guest_cluster
#include <boost/test/unit_test.hpp>

#include "tests/guest/real_nodes.hpp"

#include <filesystem>
#include <fstream>

using namespace memlend;
using namespace memlend::test;
namespace fs = std::filesystem;
namespace utf = boost::unit_test;

namespace {

boost::test_tools::assertion_result can_run(utf::test_unit_id) {
  std::string why = why_no_real_nodes();
  return unless(why.empty() ? why_no_fuse() : why);
}

// Quick settings on real time; the hosts are whoever joins.
const char* settings = R"({ "settings": { "sample_period_s": 1, "detect_samples": 2, "migrate_after_s": 100000 },
                            "hosts": [] })";

// The guest: 640 MiB of its own, up to 768 MiB more through virtio-mem. It
// allocates 320 MiB beyond what it has available: two of the estimator's
// 256 MiB steps, the second asked for once the first is plugged and used,
// and it still keeps more than the estimator's half margin (128 MiB). Freed,
// it has more available than boot memory and both steps, less the margin
// and the slack: the surplus is both steps.
constexpr std::uint64_t boot_mib = 640, device_mib = 768, grow_mib = 320;

// Real guests borrow real memory: every node lends 1 MiB per MiB.
const std::vector<std::string> scale{"--data-kib-per-gib", "1048576"};

struct Cluster : RealNodes {
  Cluster() : RealNodes({"A", "B"}, settings) {
    for (const char* d : {"qmp", "plug", "inspect", "mem", "qmp-B"}) fs::create_directories(path(d));
    // A full node: its VMs hold all its memory but 16 MiB (a host with
    // none at all and no VM yet could not join).
    std::ofstream(path("meminfo-A")) << "MemTotal:        4194304 kB\nMemFree:           16384 kB\n"
                                        "MemAvailable:      16384 kB\n";
  }

  void start_controller() { RealNodes::start_controller(scale); }

  // A serves its VM's memory file, in a mount namespace where its kernel says
  // it has nothing available.
  void start_agent_a() {
    std::vector<std::string> argv{"/usr/bin/unshare", "-m", "/bin/sh", "-c",
                                  "mount --bind \"$1\" /proc/meminfo && shift && exec \"$@\"", "sh",
                                  path("meminfo-A")};
    auto a = agent_argv("A", path("qmp"), scale);
    argv.insert(argv.end(), a.begin(), a.end());
    argv.insert(argv.end(), {"--qemu-vm",
                             "web,qmp=" + path("plug/web.qmp") + ",max-mib=" + std::to_string(device_mib),
                             "--memory-dir", path("mem")});
    agent_a = net.start("A", argv, "agent-A.log", true);
  }

  void start_agent_b() { agent_b = net.start("B", agent_argv("B", path("qmp-B"), scale), "agent-B.log"); }

  // A file as A's agent sees it, in its mount namespace.
  std::string in_a(const std::string& file) const { return "/proc/" + std::to_string(agent_a) + "/root" + file; }

  std::size_t count(const std::string& event) const { return events(event, "web").size(); }

  std::int64_t mib_of(const std::string& event) const {
    std::int64_t mib = 0;
    for (const auto& e : events(event, "web")) mib += e.value("mib", std::int64_t{0});
    return mib;
  }

  int agent_a = 0, agent_b = 0;
};

nlohmann::json run_json(const std::vector<std::string>& argv) {
  auto r = run_process(argv, 120);
  BOOST_TEST_REQUIRE(r.status == 0, r.err);
  return nlohmann::json::parse(r.out);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_real_guest_short_of_memory_borrows_from_another_node_and_gives_it_back,
                     *utf::precondition(can_run)) {
  Cluster c;
  c.start_controller();
  c.start_agent_b();
  c.start_agent_a();
  std::string file = c.path("mem") + "/web";
  bool served = eventually([&] { return fs::exists(c.in_a(file)) || !c.net.alive(c.agent_a); }, 60s) &&
                c.net.alive(c.agent_a);
  BOOST_TEST_REQUIRE(served,
                     "A's agent serves no memory file" << c.logs());

  QemuGuestOptions o;
  o.memory_file = file;
  o.memdev_bytes = device_mib * mib;
  o.base_bytes = boot_mib * mib;
  o.balloon = true;
  // One socket for the platform's readings, one for the data plane's plugs,
  // one for the operator's inspect: QEMU serves one client on each.
  o.extra_qmp = {c.path("qmp/web.qmp"), c.path("plug/web.qmp"), c.path("inspect/web.qmp")};
  o.launcher = {"/usr/bin/nsenter", "--mount=/proc/" + std::to_string(c.agent_a) + "/ns/mnt", "--"};
  o.kernel_args = "memlend.grow_mib=" + std::to_string(grow_mib) +
                  " memlend.floor_mib=64 memlend.wait_s=900 memlend.unplug=1 memlend.linger_s=900";
  auto started = std::chrono::steady_clock::now();
  auto guest = QemuGuest::start(image(), qemu_binary(), o);
  BOOST_TEST_REQUIRE(static_cast<bool>(guest), (guest ? "" : guest.error().message) << c.logs());
  QemuGuest& g = **guest;

  // The guest runs short and waits; nothing but its balloon statistics says so.
  std::string short_line = g.wait_line("MEMLEND-GUEST-SHORT", 600s);
  BOOST_TEST_REQUIRE(!short_line.empty(), tail(g.console()) << c.logs());
  BOOST_TEST_MESSAGE("guest short " << seconds_since(started) << " s after QEMU started: " << short_line);

  // What an operator sees on the node: the guest's available memory and the
  // need memlend infers from it.
  BOOST_TEST_REQUIRE(eventually([&] {
    auto seen = run_json({c.bin, "inspect", "--platform", "qemu", "--qmp-dir", c.path("inspect"), "--interval", "1s",
                          "--json"});
    BOOST_TEST_MESSAGE("inspect: " << seen["vms"].dump());
    return seen["vms"].size() == 1 && seen["vms"][0]["guest_available_mib"].is_number() &&
           seen["vms"][0]["demand"]["reason"].get<std::string>().find("guest has") != std::string::npos;
  }, 120s));

  // Detected, lent by B, plugged into the guest by A's agent.
  BOOST_TEST_REQUIRE(eventually([&] { return c.count("lease_granted") >= 1; }, 300s), c.logs());
  BOOST_TEST(c.count("need_detected") >= 1u, c.logs());
  for (const auto& e : c.events("lease_granted", "web")) BOOST_TEST(e["donor"] == "B", e.dump());
  BOOST_TEST_MESSAGE("lent " << c.mib_of("lease_granted") << " MiB " << seconds_since(started) << " s after start");
  std::string result = g.wait_line("MEMLEND-GUEST ", 900s);
  BOOST_TEST_MESSAGE("guest: " << result);
  BOOST_TEST_REQUIRE(result.find("MEMLEND-GUEST ok ") != std::string::npos, tail(g.console()) << c.logs());
  BOOST_TEST(field(result, "bytes") > boot_mib * mib);
  // Two leases: the first plugged and used up, the guest asked for more.
  BOOST_TEST(c.count("lease_granted") >= 2u, c.logs());
  BOOST_TEST(field(result, "mib_plugged") == static_cast<std::uint64_t>(c.mib_of("lease_granted")), c.logs());

  // The guest freed it all: the surplus is seen, the memory unplugged and
  // every lease released back to B.
  std::string unplugged = g.wait_line("MEMLEND-GUEST-UNPLUG", 900s);
  BOOST_TEST_REQUIRE(unplugged.find("MEMLEND-GUEST-UNPLUG ok") != std::string::npos, tail(g.console()) << c.logs());
  BOOST_TEST_MESSAGE("unplugged " << seconds_since(started) << " s after start");
  BOOST_TEST_REQUIRE(eventually([&] { return c.mib_of("lease_released") == c.mib_of("lease_granted"); }, 120s),
                     c.logs());
  // Given back for good: not lent again while the guest's leases were unplugged one by one.
  BOOST_TEST(c.count("lease_granted") == 2u, c.logs());
  auto state = run_json({c.bin, "state", "--db", c.path("open.db"), "--json"});
  for (const auto& h : state["hosts"]) BOOST_TEST(h["lent_mib"] == 0, h.dump());
  for (const auto& l : state["leases"]) BOOST_TEST(l["state"] == "released", l.dump());
  auto why = run_process({c.bin, "why", "web", "--db", c.path("open.db")}, 60);
  BOOST_TEST(why.status == 0, why.err);
  BOOST_TEST_MESSAGE("memlend why web:\n" << why.out);
  BOOST_TEST(why.out.find("B") != std::string::npos, why.out);

  auto quit = g.qmp().execute("quit");
  BOOST_TEST((quit || quit.error().code == ErrorCode::unavailable));
  BOOST_TEST(g.wait_exit(30s) == 0);
  guest->reset();
  c.net.stop(c.agent_a);
  c.net.stop(c.agent_b);
  c.net.stop(c.controller);
}
