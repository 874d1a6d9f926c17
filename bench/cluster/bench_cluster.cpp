// Cluster mode at scale, on loopback: one controller (a child process) and
// many agents (actors in this process, sharing its one TLS connection).
//
// Prints, for each size:
//  - registration: how long it takes all agents to join, and the rate;
//  - decision latency: from the telemetry sample on which a VM first lacks
//    memory (sent by its agent) to the lease being active at the donor's
//    agent, p50/p99/max, with detect_samples = 1 so hysteresis adds nothing;
//  - the floor under it, measured in the same run: a bare request/response
//    round trip between an agent and its host actor over the same connection;
//  - controller memory per host: its resident set after all agents joined,
//    less before, over the number of hosts.
//
// usage: bench_cluster [hosts] [needy VMs]   (default 1000 hosts, 100 needy VMs)
#include "actors/agent.hpp"
#include "node/controller.hpp"
#include "scenario/scenario.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace memlend;
using Clock = std::chrono::steady_clock;

namespace {

std::string binary() {
  char path[4096];
  ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
  path[n > 0 ? n : 0] = 0;
  return (std::filesystem::path(path).parent_path().parent_path().parent_path() / "memlend").string();
}

void sh(const std::string& cmd) {
  if (std::system((cmd + " >/dev/null 2>&1").c_str()) != 0) {
    std::cerr << "failed: " << cmd << '\n';
    std::exit(1);
  }
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

std::string make_scenario(int hosts, int needy) {
  nlohmann::json s;
  s["settings"] = {{"detect_samples", 1}, {"sample_period_s", 10}, {"migrate_after_s", 1000000000}};
  char name[32];
  for (int h = 0; h < hosts; ++h) {
    std::snprintf(name, sizeof name, "h%04d", h);
    s["hosts"].push_back({{"name", name}, {"memory_mib", 65536}, {"cpu_mhz", 32000}});
  }
  for (int h = 0; h < hosts; ++h) {
    std::snprintf(name, sizeof name, "h%04d", h);
    std::string host = name;
    std::snprintf(name, sizeof name, "v%04d", h);
    s["vms"].push_back({{"name", name}, {"host", host}, {"memory_mib", 32768}, {"cpu_mhz", 8000}});
  }
  // One VM a period outgrows its host by 4 GiB, each on a different host, so
  // the decisions do not queue behind each other; every host has 32 GiB to
  // lend, so all of them can be served.
  for (int i = 0; i < needy; ++i) {
    std::snprintf(name, sizeof name, "v%04d", (i * 7) % hosts);
    s["events"].push_back({{"at_s", 60 + 10 * i + 5}, {"vm", name}, {"memory_mib", 65536 + 4096}});
  }
  return s.dump();
}

struct Measure {
  std::mutex m;
  std::atomic<int> joined{0};
  std::map<std::uint32_t, Clock::time_point> first_short;
  std::set<std::uint32_t> served;  // a decision counts once, at its first lease
  std::vector<double> latency_ms;
};

// Returns the controller's resident set (KiB) once every agent had joined.
long run(int hosts, int needy, double speed) {
  std::string dir = std::filesystem::temp_directory_path() / ("memlend-bench-cluster-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  sh("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=bench-ca -keyout " + dir + "/ca.key -out " + dir +
     "/ca.pem");
  // The agents of this process share one certificate, which names every host
  // (a DNS SAN each): the controller checks that a joining agent's does.
  {
    std::ofstream ext(dir + "/agents.ext");
    ext << "subjectAltName=";
    char name[32];
    for (int h = 0; h < hosts; ++h) {
      std::snprintf(name, sizeof name, "h%04d", h);
      ext << (h ? "," : "") << "DNS:" << name;
    }
    ext << "\n";
  }
  for (const char* n : {"ctrl", "agents"}) {
    std::string d = dir + "/" + n;
    sh("openssl req -newkey rsa:2048 -nodes -subj /CN=" + std::string(n) + " -keyout " + d + ".key -out " + d + ".csr");
    std::string ext = std::string(n) == "agents" ? " -extfile " + dir + "/agents.ext" : "";
    sh("openssl x509 -req -days 1 -in " + d + ".csr -CA " + dir + "/ca.pem -CAkey " + dir +
       "/ca.key -CAcreateserial -out " + d + ".pem" + ext);
  }
  std::string secret = "a benchmark cluster secret";
  {
    std::ofstream(dir + "/secret") << secret;
    std::filesystem::permissions(dir + "/secret", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    std::ofstream(dir + "/scenario.json") << make_scenario(hosts, needy);
  }
  int port = 20000 + getpid() % 20000;
  pid_t ctrl = fork();
  if (ctrl == 0) {
    int fd = ::open((dir + "/controller.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::string b = binary(), sp = std::to_string(speed), listen = "127.0.0.1:" + std::to_string(port);
    execl(b.c_str(), b.c_str(), "run", "--scenario", (dir + "/scenario.json").c_str(), "--speed", sp.c_str(),
          "--for", "1000000", "--quiet", "--events-out", (dir + "/events.jsonl").c_str(), "--db", (dir + "/memlend.db").c_str(), "--datastore", (dir + "/datastore").c_str(), "--listen", listen.c_str(),
          "--cluster", "bench", "--cluster-secret-file", (dir + "/secret").c_str(), "--tls-ca",
          (dir + "/ca.pem").c_str(), "--tls-cert", (dir + "/ctrl.pem").c_str(), "--tls-key",
          (dir + "/ctrl.key").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 300; ++i) {
    std::ifstream log(dir + "/controller.log");
    std::stringstream s;
    s << log.rdbuf();
    if (s.str().find("listening") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  long rss_before = rss_kib(ctrl);

  auto sc = platform::parse_scenario(make_scenario(hosts, needy), "bench");
  caf::actor_system_config cfg;
  register_types(cfg);
  configure_network(cfg, {dir + "/agents.pem", dir + "/agents.key", dir + "/ca.pem"});
  Measure measure;
  long result = 0;
  {
    caf::actor_system sys{cfg};
    auto probe = std::make_shared<AgentProbe>();
    probe->joined = [&](const std::string&) { ++measure.joined; };
    probe->sampled = [&](std::uint32_t vm, std::int64_t short_mib) {
      if (short_mib <= 0) return;
      std::lock_guard<std::mutex> lock(measure.m);
      measure.first_short.emplace(vm, Clock::now());
    };
    probe->lending = [&](std::uint64_t, std::uint32_t vm) {
      auto now = Clock::now();
      std::lock_guard<std::mutex> lock(measure.m);
      auto it = measure.first_short.find(vm);
      if (it != measure.first_short.end() && measure.served.insert(vm).second)
        measure.latency_ms.push_back(std::chrono::duration<double, std::milli>(now - it->second).count());
    };
    auto identity = NodeIdentity::load(dir + "/agents.pem", dir + "/agents.key");
    if (!identity) {
      std::cerr << "bench_cluster: " << identity.error().message << '\n';
      std::exit(1);
    }
    auto shared_identity = std::make_shared<const NodeIdentity>(std::move(*identity));
    std::vector<agent_actor> agents;
    auto t0 = Clock::now();
    for (int h = 0; h < hosts; ++h) {
      AgentConfig ac;
      ac.cluster = "bench";
      ac.secret = secret;
      ac.host = sc->hosts[h].name;
      ac.data_addr = "127.0.0.1:0";
      ac.controllers = {{"127.0.0.1", static_cast<std::uint16_t>(port)}};
      ac.scenario = *sc;
      ac.incarnation = static_cast<std::uint64_t>(h) + 1;
      ac.console = false;
      ac.probe = probe;
      ac.identity = shared_identity;
      agents.push_back(sys.spawn(agent, ac));
    }
    while (measure.joined < hosts && Clock::now() - t0 < std::chrono::minutes(5))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    double join_s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    long rss_after = rss_kib(ctrl);

    // The floor: request/response with a host actor over the same connection.
    std::vector<double> rtt_ms;
    {
      caf::scoped_actor self{sys};
      auto mm = sys.openssl_manager().actor_handle();
      caf::strong_actor_ptr registrar;
      self->request(mm, std::chrono::seconds(10), caf::connect_atom::value, std::string("127.0.0.1"),
                    static_cast<std::uint16_t>(port))
          .receive([&](const caf::node_id&, caf::strong_actor_ptr& p, const std::set<std::string>&) { registrar = p; },
                   [](caf::error&) {});
      for (int i = 0; i < 1000 && registrar; ++i) {
        auto start = Clock::now();
        // A join with a wrong proof is refused at once: one full round trip.
        AgentHello hello;
        hello.cluster = "bench";
        hello.host = sc->hosts[0].name;
        hello.proof = "x";
        self->request(caf::actor_cast<registrar_actor>(registrar), std::chrono::seconds(10), atom::join::value, hello,
                      caf::actor{})
            .receive([&](JoinReply&, caf::actor&) {}, [](caf::error&) {});
        rtt_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      }
    }
    // Let the needy VMs come and be served.
    double run_s = (60 + 10.0 * needy + 30) / speed;
    auto until = Clock::now() + std::chrono::duration<double>(run_s);
    while (Clock::now() < until) {
      {
        std::lock_guard<std::mutex> lock(measure.m);
        if (static_cast<int>(measure.latency_ms.size()) >= needy) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    std::lock_guard<std::mutex> lock(measure.m);
    std::printf("%6d hosts | join all %6.2f s (%5.0f agents/s) | decision p50 %5.2f ms p99 %5.2f ms max %5.2f ms "
                "(%zu of %d) | floor: round trip p50 %4.2f ms p99 %4.2f ms | controller RSS %6.1f MiB\n",
                hosts, join_s, hosts / join_s, pct(measure.latency_ms, 0.5), pct(measure.latency_ms, 0.99),
                pct(measure.latency_ms, 1.0), measure.latency_ms.size(), needy, pct(rtt_ms, 0.5), pct(rtt_ms, 0.99),
                static_cast<double>(rss_after) / 1024);
    (void)rss_before;
    result = rss_after;
    std::fflush(stdout);
    for (auto& a : agents) caf::anon_send(a, atom::shutdown::value);
  }
  ::kill(ctrl, SIGTERM);
  waitpid(ctrl, nullptr, 0);
  if (std::getenv("MEMLEND_BENCH_KEEP")) {
    std::printf("kept %s\n", dir.c_str());
    return result;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  int hosts = argc > 1 ? std::atoi(argv[1]) : 1000;
  int needy = argc > 2 ? std::atoi(argv[2]) : 100;
  if (hosts < 2 || needy < 1 || needy > hosts) {
    std::cerr << "usage: bench_cluster [hosts >= 2] [needy VMs, 1..hosts]\n";
    return 2;
  }
  std::printf("bench_cluster: controller as a child process, agents in this one, TLS on loopback\n");
  std::printf("target: decision p99 under 10 ms with 1,000 hosts\n");
  int small = std::max(hosts / 10, 2);
  // The same share of needy VMs at both sizes.
  long rss_small = run(small, std::max(1, needy * small / hosts), 20);
  long rss_large = run(hosts, needy, 20);
  std::printf("controller memory per host (marginal, %d to %d hosts): %.1f KiB\n", small, hosts,
              static_cast<double>(rss_large - rss_small) / (hosts - small));
  return 0;
}
