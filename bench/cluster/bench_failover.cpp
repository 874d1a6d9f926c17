// The controller's failover measured whole: from the death of the node that
// runs the controller to the first decision of the controller that follows,
// against the obvious alternative, one node with today's local store whose
// controller is killed and started again at once on the same node.
//
//   bench_failover [--runs N]
//
// Each run is a cluster of real processes in network namespaces (root, as
// the cluster tests): `memlend run` members with a replicated store (three,
// dqlite's network latency 20 ms) or one `memlend run` with its local file,
// and two agents of exec-backend nodes, A with a VM "web" and B lending. The
// controller lends web 256 MiB; then web's guest is made short by 256 MiB
// more and, at once, the controller's node dies: its link is cut (a dead
// host answers nothing) and its process is killed with SIGKILL. The clock
// runs from the kill to the moment the next controller's --events-out holds
// the second lease_granted, and the steps in between are timed from the
// logs: a member leads, the controller has resumed from the store, both
// agents have joined it.
#include "tests/cluster/exec_node.hpp"
#include "tests/cluster/netns.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <vector>

using memlend::test::lines_of;
using memlend::test::make_node;
using memlend::test::NetnsCluster;
using memlend::test::slurp;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

const std::string bin = MEMLEND_BINARY;
// The tests' settings, a sample a second: what the controller detects is
// the same in both arrangements.
const char* settings = R"({ "settings": { "sample_period_s": 1, "detect_samples": 2, "migrate_after_s": 100000 },
                            "hosts": [] })";

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "bench_failover: %s\n", what.c_str());
  std::exit(1);
}

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Polls `cond` every 5 ms until it holds (the time since t0) or `bound` passes.
std::optional<double> when(Clock::time_point t0, const std::function<bool()>& cond, std::chrono::seconds bound) {
  auto end = Clock::now() + bound;
  while (Clock::now() < end) {
    if (cond()) return since(t0);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return std::nullopt;
}

struct Steps {
  double leads = 0, resumed = 0, rejoined = 0, decided = 0;
};

class Arrangement {
 public:
  explicit Arrangement(std::vector<std::string> controllers)
      : controllers_(std::move(controllers)), net_(all_nodes(controllers_)) {
    std::vector<std::string> names = controllers_;
    names.push_back("A");
    names.push_back("B");
    net_.make_certificates(names);
    std::ofstream(net_.dir() + "/settings.json") << settings;
    std::ofstream(net_.dir() + "/secret") << "a cluster secret of some length\n";
    ::chmod((net_.dir() + "/secret").c_str(), 0600);
    make_node(hooks("A"), "A", 16384, 0, "web", 50);
    make_node(hooks("B"), "B", 65536, 60000, "", 0);
  }

  fs::path hooks(const std::string& h) const { return fs::path(net_.dir()) / ("hooks-" + h); }
  std::string log_of(const std::string& n) const { return slurp(net_.dir() + "/" + n + ".log"); }
  std::size_t granted(const std::string& c) const {
    std::size_t n = 0;
    for (const auto& line : lines_of(slurp(net_.dir() + "/events-" + c + ".jsonl")))
      if (line.find("\"lease_granted\"") != std::string::npos) ++n;
    return n;
  }

  // `replicated`: member i of three, else the one controller with its file.
  int start_controller(const std::string& name, bool replicated) {
    std::vector<std::string> argv = {
        bin, "run", "--scenario", "settings.json", "--events-out", "events-" + name + ".jsonl", "--metrics", "off",
        "--listen", net_.address(name) + ":7411", "--cluster", "c1", "--cluster-secret-file", "secret",
        "--tls-ca", "ca.pem", "--tls-cert", name + ".pem", "--tls-key", name + ".key"};
    if (replicated) {
      std::string id(1, name.back());
      for (const auto& a : std::vector<std::string>{"--replica-id", id, "--replica-address",
                                                    net_.address(name) + ":7420", "--replica-dir",
                                                    "replica-" + name, "--replica-latency-ms", "20"})
        argv.push_back(a);
      if (id != "1") {
        argv.push_back("--replica-join");
        argv.push_back(net_.address("c1") + ":7420");
      }
    } else {
      argv.push_back("--db");
      argv.push_back(name + ".db");
    }
    return pid_[name] = net_.start(name, argv, name + ".log");
  }

  void start_agents() {
    std::string list;
    for (const auto& c : controllers_) list += (list.empty() ? "" : ",") + net_.address(c) + ":7411";
    for (const std::string h : {"A", "B"})
      net_.start(h,
                 {bin, "agent", "--controller", list, "--platform", "exec", "--hooks-dir", hooks(h).string(),
                  "--listen", net_.address(h) + ":7412", "--cluster", "c1", "--cluster-secret-file", "secret",
                  "--tls-ca", "ca.pem", "--tls-cert", h + ".pem", "--tls-key", h + ".key"},
                 h + ".log");
  }

  // Waits until `c` has lent web its first 256 MiB.
  void first_lease(const std::string& c) {
    if (!memlend::test::eventually([&] { return granted(c) == 1; }, std::chrono::seconds(120)))
      die("the first lease was never granted; logs in " + net_.dir());
  }

  // Web short again, and the controller's node dies; returns when it did.
  Clock::time_point kill(const std::string& c) {
    make_node(hooks("A"), "A", 16384, 0, "web", -206);
    net_.partition(c, true);
    auto t0 = Clock::now();
    net_.kill9(pid_.at(c));
    return t0;
  }

  bool rejoined(const std::string& h) const {
    std::string log = log_of(h);
    auto lost = log.find("lost the controller");
    return lost != std::string::npos && log.find("joined cluster c1", lost) != std::string::npos;
  }

  // The steps after the kill at t0, until `next` has decided (or nullopt).
  std::optional<Steps> follow(Clock::time_point t0, const std::function<std::string()>& next, bool replicated) {
    Steps s;
    auto bound = std::chrono::seconds(120);
    std::string c;
    auto leads = when(t0, [&] { return !(c = next()).empty(); }, bound);
    if (!leads) return std::nullopt;
    s.leads = *leads;
    auto resumed = when(t0, [&] {
      std::string log = log_of(c);
      return replicated ? log.find("resuming from replicated store") != std::string::npos
                        : log.find("resuming from") != std::string::npos;
    }, bound);
    auto rejoin = when(t0, [&] { return rejoined("A") && rejoined("B"); }, bound);
    auto decided = when(t0, [&] { return granted(c) == 2; }, bound);
    if (!resumed || !rejoin || !decided) return std::nullopt;
    s.resumed = *resumed;
    s.rejoined = *rejoin;
    s.decided = *decided;
    return s;
  }

  NetnsCluster& net() { return net_; }

 private:
  static std::vector<std::string> all_nodes(std::vector<std::string> c) {
    c.push_back("A");
    c.push_back("B");
    return c;
  }
  std::vector<std::string> controllers_;
  NetnsCluster net_;
  std::map<std::string, int> pid_;
};

std::optional<Steps> replicated_run() {
  Arrangement a({"c1", "c2", "c3"});
  a.start_controller("c1", true);
  if (!memlend::test::eventually([&] { return a.log_of("c1").find("leads; the controller") != std::string::npos; },
                                 std::chrono::seconds(60)))
    die("member 1 never led");
  a.start_controller("c2", true);
  a.start_controller("c3", true);
  if (!memlend::test::eventually([&] {
        return a.log_of("c2").find("joined as a voter") != std::string::npos &&
               a.log_of("c3").find("joined as a voter") != std::string::npos;
      }, std::chrono::seconds(60)))
    die("members 2 and 3 never joined");
  a.start_agents();
  a.first_lease("c1");
  auto t0 = a.kill("c1");
  auto r = a.follow(t0, [&]() -> std::string {
    for (const std::string c : {"c2", "c3"})
      if (a.log_of(c).find("leads; the controller starts here") != std::string::npos) return c;
    return "";
  }, true);
  return r;
}

std::optional<Steps> restart_run() {
  Arrangement a({"c1"});
  a.start_controller("c1", false);
  a.start_agents();
  a.first_lease("c1");
  auto t0 = a.kill("c1");
  // Started again at once, on the same node (its link back up): the store
  // is its own disk's, so the node has to come back.
  a.net().partition("c1", false);
  a.start_controller("c1", false);
  return a.follow(t0, [] { return std::string("c1"); }, false);
}

void print(const char* what, std::vector<Steps> runs) {
  if (runs.empty()) return;
  auto col = [&](double Steps::*m) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r.*m);
    std::sort(v.begin(), v.end());
    char buf[96];
    std::snprintf(buf, sizeof buf, "%.2f–%.2f s, median %.2f s", v.front(), v.back(), v[v.size() / 2]);
    return std::string(buf);
  };
  std::printf("%s (%zu runs)\n", what, runs.size());
  std::printf("  a controller leads again:     %s\n", col(&Steps::leads).c_str());
  std::printf("  it has resumed from the store: %s\n", col(&Steps::resumed).c_str());
  std::printf("  both agents have joined it:    %s\n", col(&Steps::rejoined).c_str());
  std::printf("  its first decision:            %s\n", col(&Steps::decided).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) {
      runs = std::atoi(argv[++i]);
      if (runs < 1 || runs > 100) die("--runs: from 1 to 100");
    } else {
      die("usage: bench_failover [--runs N]");
    }
  }
  if (::geteuid() != 0) die("needs root (network namespaces), as the cluster tests do");
  std::vector<Steps> replicated, restarted;
  for (int i = 0; i < runs; ++i) {
    // Alternated, so that the machine's load falls on both alike.
    auto r = replicated_run();
    if (!r) die("a replicated run did not decide again within its bound");
    replicated.push_back(*r);
    auto s = restart_run();
    if (!s) die("a restarted run did not decide again within its bound");
    restarted.push_back(*s);
    std::printf("run %d: replicated %.2f s, restarted %.2f s to the first decision\n", i + 1, r->decided,
                s->decided);
    std::fflush(stdout);
  }
  std::printf("\nfrom the controller's node's death (SIGKILL, link cut) to:\n");
  print("replicated store, 3 members: another member takes over", replicated);
  print("local store, the same node's controller started again at once", restarted);
  return 0;
}
