// `memlend run` with its real data path when a donor dies under a VM's
// guest workload: every run ends by itself, a stop ends it in seconds, and
// the guest's memory comes through the failover and the re-home intact.
#define BOOST_TEST_MODULE rdma_run_failover
#include <boost/test/unit_test.hpp>

#include "tests/support/child.hpp"

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <sys/mount.h>
#include <unistd.h>

using namespace memlend::test;

namespace {

const std::string bin = MEMLEND_BINARY;

struct Dir {
  std::string path = make_temp_dir("run-failover");
  ~Dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

// VM2 borrows from B (the host with room); B then dies, and the lease moves
// to C, filled from the mirror, while VM2's guest keeps faulting. This once
// hung `memlend run` in about half the runs.
const char* rehome_scenario = R"({
  "settings": {"placement": "first_fit", "donors": "fewest", "migrate_after_s": 300, "detect_samples": 3},
  "hosts": [
    {"name": "A", "memory_mib": 16384, "cpu_mhz": 32000},
    {"name": "B", "memory_mib": 131072, "cpu_mhz": 32000},
    {"name": "C", "memory_mib": 98304, "cpu_mhz": 8000}
  ],
  "vms": [
    {"name": "VM2", "host": "A", "memory_mib": 8192, "cpu_mhz": 16000},
    {"name": "VMb", "host": "B", "memory_mib": 4096, "cpu_mhz": 4000}
  ],
  "events": [
    {"at_s": 60, "vm": "VM2", "memory_mib": 65536},
    {"at_s": 400, "host": "B", "up": false}
  ]
})";

std::string write(const Dir& d, const std::string& name, const std::string& text) {
  std::ofstream(d.file(name)) << text;
  return d.file(name);
}

std::vector<std::string> run_args(const Dir& d, const std::string& scenario) {
  return {bin, "run", "--scenario", scenario, "--for", "900s", "--speed", "300", "--db", d.file("m.db"),
          "--datastore", d.file("datastore"), "--metrics", "off"};
}

}  // namespace

BOOST_AUTO_TEST_CASE(every_run_with_a_rehome_ends_by_itself) {
  for (int i = 0; i < 6; ++i) {
    Dir d;
    auto scenario = write(d, "s.json", rehome_scenario);
    // Three seconds of scenario time; the bound only catches a hang.
    auto r = run_process(run_args(d, scenario), 90, d.path);
    BOOST_TEST_REQUIRE(!r.timed_out, "run " << i << " hung; stderr: " << r.err);
    BOOST_TEST(r.status == 0, "run " << i << " stderr: " << r.err);
    BOOST_TEST(r.out.find("B is down") != std::string::npos, r.out);
    BOOST_TEST(r.out.find("now lent by C") != std::string::npos, r.out);
    BOOST_TEST(std::regex_search(r.out, std::regex("guest workload of VM2 wrote [1-9][0-9]* KiB.*: 0 words wrong")),
               r.out);
  }
}

// systemd's stop, right after the donor died: the process ends by itself
// (exit 0), well before the SIGKILL that would follow.
BOOST_AUTO_TEST_CASE(sigterm_during_a_rehome_ends_the_run) {
  for (int i = 0; i < 3; ++i) {
    Dir d;
    auto scenario = write(d, "s.json", rehome_scenario);
    Child run(run_args(d, scenario), d.file("run"));
    bool down = false;
    for (int wait = 0; wait < 3000 && !down && run.running(); ++wait) {
      down = run.out().find("B is down") != std::string::npos;
      if (!down) ::usleep(10 * 1000);
    }
    BOOST_TEST_REQUIRE(down, "B never went down: " << run.out() << run.err());
    int status = run.stop(10);
    BOOST_TEST(status == 0, "stop " << i << ": status " << status << "; stderr: " << run.err());
  }
}

namespace {

// VM borrows 24 GiB from B (24 MiB of real memory at the default scale); its
// mirror goes to a datastore of 4 MiB, which fills; later B dies.
const char* full_datastore_scenario = R"({
  "settings": {"placement": "first_fit", "donors": "fewest", "migrate_after_s": 3000, "detect_samples": 3},
  "hosts": [
    {"name": "A", "memory_mib": 16384, "cpu_mhz": 32000},
    {"name": "B", "memory_mib": 65536, "cpu_mhz": 32000},
    {"name": "C", "memory_mib": 65536, "cpu_mhz": 8000}
  ],
  "vms": [
    {"name": "VM", "host": "A", "memory_mib": 8192, "cpu_mhz": 16000}
  ],
  "events": [
    {"at_s": 60, "vm": "VM", "memory_mib": 40960},
    {"at_s": 1200, "host": "B", "up": false}
  ]
})";

bool may_mount() {
  std::string dir = make_temp_dir("mount-probe");
  bool ok = ::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=64k") == 0;
  if (ok) ::umount2(dir.c_str(), MNT_DETACH);
  std::filesystem::remove(dir);
  return ok;
}

}  // namespace

// A datastore that fills up: said at once, and a donor's death afterwards
// is reported as memory lost, not as a failover to a mirror that is not
// there; nothing dies of a signal.
BOOST_AUTO_TEST_CASE(a_full_datastore_is_said_and_kills_nothing) {
  if (!may_mount()) {
    BOOST_TEST_MESSAGE("skipped: needs to mount a tmpfs (root or CAP_SYS_ADMIN)");
    return;
  }
  Dir d;
  std::filesystem::create_directory(d.file("datastore"));
  BOOST_TEST_REQUIRE(::mount("tmpfs", d.file("datastore").c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                             "size=4096k,mode=0700") == 0);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{d.file("datastore")};
  auto scenario = write(d, "s.json", full_datastore_scenario);
  auto args = run_args(d, scenario);
  args[5] = "1500s";
  args.insert(args.end(), {"--events-out", d.file("events.jsonl")});
  auto r = run_process(args, 120, d.path);
  BOOST_TEST_REQUIRE(!r.timed_out, r.err);
  BOOST_TEST(r.status == 0, "stdout: " << r.out << "\nstderr: " << r.err);
  BOOST_TEST(r.out.find("the mirror of VM cannot be written") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("No space left on device") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("lent by B is lost") != std::string::npos, r.out);
  BOOST_TEST(r.out.find("from its mirror") == std::string::npos, r.out);
  auto events = read_file(d.file("events.jsonl"));
  BOOST_TEST(events.find("\"mirror_failed\"") != std::string::npos);
  BOOST_TEST(events.find("\"memory_lost\"") != std::string::npos);
  BOOST_TEST(events.find("\"failover_to_mirror\"") == std::string::npos);
}
