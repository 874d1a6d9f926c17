// What the tests of real nodes share: a controller that knows no hosts and
// agents on the qemu platform, each in a network namespace of its own (the
// test's NetnsCluster), with the cluster's certificates, secret and settings
// written into its directory, and the event log and logs to read back.
#pragma once

#include "tests/cluster/netns.hpp"
#include "tests/guest/guest_common.hpp"

#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace memlend::test {

// Why the cluster cannot run here (no guest, no namespaces, no util-linux); "".
inline std::string why_no_real_nodes() {
  std::string why = why_no_guest();
  if (why.empty()) why = netns_unavailable();
  if (why.empty() && ::access("/usr/bin/nsenter", X_OK) != 0) why = "no nsenter (the util-linux package)";
  if (why.empty() && ::access("/usr/bin/unshare", X_OK) != 0) why = "no unshare (the util-linux package)";
  return why;
}

class RealNodes {
 public:
  // `hosts`: the agents' names; `settings`: the controller's settings-only scenario.
  RealNodes(const std::vector<std::string>& hosts, const std::string& settings)
      : net(with_controller(hosts)), hosts_(hosts) {
    net.make_certificates(with_controller(hosts));
    std::ofstream(path("settings.json")) << settings;
    std::ofstream(path("secret")) << "a cluster secret of some length\n";
    ::chmod(path("secret").c_str(), 0600);
    std::filesystem::create_directories(path("datastore"));
  }

  std::string path(const std::string& name) const { return net.dir() + "/" + name; }

  // `extra`: the flags of this test's cluster (the data path's scale, ...).
  void start_controller(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv{bin,         "run",     "--scenario", "settings.json", "--db",
                                  "open.db",   "--events-out", "events.jsonl", "--metrics", "off",
                                  "--listen",  net.address("ctrl") + ":7411"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    add_tls(argv, "ctrl");
    controller = net.start("ctrl", argv, "controller.log");
  }

  std::vector<std::string> agent_argv(const std::string& h, const std::string& qmp_dir,
                                      const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> argv{bin,         "agent",       "--controller", net.address("ctrl") + ":7411",
                                  "--platform", "qemu",       "--host",       h,
                                  "--qmp-dir", qmp_dir,       "--listen",     net.address(h) + ":7412",
                                  "--datastore", path("datastore")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    add_tls(argv, h);
    return argv;
  }

  // The events of one kind about one VM, in order.
  std::vector<nlohmann::json> events(const std::string& kind, const std::string& vm) const {
    std::vector<nlohmann::json> out;
    for (const auto& line : lines_of(slurp(path("events.jsonl")))) {
      auto e = nlohmann::json::parse(line);
      if (e["event"] == kind && e.value("vm", "") == vm) out.push_back(std::move(e));
    }
    return out;
  }

  // The tail of every process's log and the events, for a failed check.
  std::string logs() const {
    std::string out;
    std::vector<std::string> files{"controller.log"};
    for (const auto& h : hosts_) files.push_back("agent-" + h + ".log");
    files.push_back("events.jsonl");
    for (const auto& f : files) out += "\n--- " + f + "\n" + tail(slurp(path(f)), 6000);
    return out;
  }

  const std::string bin = MEMLEND_BINARY;
  NetnsCluster net;
  int controller = 0;

 private:
  static std::vector<std::string> with_controller(std::vector<std::string> hosts) {
    hosts.insert(hosts.begin(), "ctrl");
    return hosts;
  }

  static void add_tls(std::vector<std::string>& argv, const std::string& h) {
    argv.insert(argv.end(), {"--cluster", "c1", "--cluster-secret-file", "secret", "--tls-ca", "ca.pem",
                             "--tls-cert", h + ".pem", "--tls-key", h + ".key"});
  }

  std::vector<std::string> hosts_;
};

}  // namespace memlend::test
