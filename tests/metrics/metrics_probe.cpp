// metrics_probe --metrics ADDR --scenario FILE
//
// Serves memlend's metrics for a scenario's one-shot plan until SIGTERM or
// SIGINT: what `memlend run --metrics ADDR --scenario FILE` shows once its
// first decisions are carried out. The scrape tests run it as a separate
// process, the way they will run memlend itself, and check the values
// against the scenario. A bad ADDR exits 2 with one line, as run must.
#include "actors/policy/planner.hpp"
#include "firmware_hooks/scenario.hpp"
#include "metrics/http_exposer.hpp"
#include "metrics/metrics.hpp"

#include <csignal>
#include <iostream>
#include <map>
#include <string>

using namespace memlend;

namespace {

void publish(metrics::Registry& r, const policy::Scenario& sc, const std::vector<policy::Decision>& decisions) {
  std::vector<metrics::HostMetrics> hosts;
  std::map<policy::HostId, std::int64_t> used;
  for (const auto& h : sc.hosts) {
    auto m = r.host(h.name);
    m.up.set(h.up ? 1 : 0);
    m.memory_capacity_bytes.set_mib(h.memory_mib);
    m.cpu_capacity_hertz.set_mhz(h.cpu_mhz);
    hosts.push_back(m);
  }
  for (const auto& d : decisions) {
    r.decisions(d.kind).inc();
    const auto& vm = sc.vms.at(d.vm);
    policy::HostId on = d.target != policy::no_host && d.kind == policy::DecisionKind::migrate ? d.target : vm.host;
    used[on] += d.local_mib;
    hosts.at(on).cpu_used_hertz.inc(metrics::hertz_of_mhz(vm.cpu_mhz));
    for (const auto& l : d.leases) {
      hosts.at(l.donor).memory_lent_bytes.inc(metrics::bytes_of_mib(l.mib));
      hosts.at(l.donor).leases_active.inc();
      hosts.at(on).memory_borrowed_bytes.inc(metrics::bytes_of_mib(l.mib));
      r.lease_grants(l.transport).inc();
    }
    if (d.mirror_mib > 0) r.mirrors_active().inc();
    if (d.kind == policy::DecisionKind::unsatisfied) {
      r.unsatisfied().inc();
      r.vms_unsatisfied().inc();
    }
    if (d.kind == policy::DecisionKind::recommend_migration) {
      r.recommendations().inc();
      r.recommendations_outstanding().inc();
    }
    if (d.kind != policy::DecisionKind::none) r.detections().inc();
  }
  for (const auto& [host, mib] : used) hosts.at(host).memory_used_bytes.set_mib(mib);
}

}  // namespace

int main(int argc, char** argv) {
  std::string address, scenario;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--metrics") address = argv[i + 1];
    else if (flag == "--scenario") scenario = argv[i + 1];
  }
  if (address.empty() || scenario.empty()) {
    std::cerr << "usage: metrics_probe --metrics ADDR --scenario FILE\n";
    return 2;
  }
  auto sc = platform::load_scenario(scenario);
  if (!sc) {
    std::cerr << "metrics_probe: " << sc.error().message << '\n';
    return 2;
  }
  // Block the stop signals before the exposer's threads start, so that only
  // sigwait below receives them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  metrics::Registry registry("probe");
  policy::Cluster cluster(*sc);
  publish(registry, *sc, cluster.plan());
  auto exposer = metrics::HttpExposer::start(registry, address);
  if (!exposer) {
    std::cerr << "metrics_probe: --metrics: " << exposer.error().message << '\n';
    return 2;
  }
  std::cout << "serving http://" << (*exposer)->address().text() << "/metrics" << std::endl;
  int sig = 0;
  sigwait(&stop, &sig);
  return 0;
}
