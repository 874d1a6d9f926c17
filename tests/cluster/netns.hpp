// A cluster of hosts in network namespaces made by the test itself: one
// namespace holds a bridge, each node gets a namespace joined to it by a
// veth pair, and every address is on that private bridge. Processes are
// started in a node's namespace and can be killed with SIGKILL; a node is
// partitioned by taking its veth end on the bridge down. Everything is torn
// down in the destructor.
#pragma once

#include "tests/support/child.hpp"

#include <boost/test/unit_test.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace memlend::test {

// Whether this machine lets the test make namespaces (root, iproute2); the
// reason when not, for the skip message.
std::string netns_unavailable();

// The same as a case's precondition: *utf::precondition(namespaces_available).
inline boost::test_tools::assertion_result namespaces_available(boost::unit_test::test_unit_id) {
  std::string why = netns_unavailable();
  boost::test_tools::assertion_result r(why.empty());
  r.message() << why;
  return r;
}

class NetnsCluster {
 public:
  explicit NetnsCluster(const std::vector<std::string>& nodes);
  ~NetnsCluster();
  NetnsCluster(const NetnsCluster&) = delete;
  NetnsCluster& operator=(const NetnsCluster&) = delete;

  const std::string& dir() const { return dir_; }
  std::string address(const std::string& node) const { return addresses_.at(node); }
  // The node's network namespace as a path, for `nsenter --net=`.
  std::string netns_path(const std::string& node) const { return "/run/netns/" + ns(node); }

  // Starts argv in the node's namespace, stdout and stderr to dir()/<log>.
  // `ip netns exec` gives it a mount namespace of its own too; with
  // `host_mounts` it enters the network namespace only (nsenter), so that
  // what it mounts (an agent's FUSE memory files) is seen by the host's
  // processes (a QEMU that maps them).
  int start(const std::string& node, const std::vector<std::string>& argv, const std::string& log,
            bool host_mounts = false);
  void kill9(int pid);
  void stop(int pid);   // SIGTERM, then SIGKILL after a grace period
  bool alive(int pid);
  // Its exit status once alive() saw it end (-1: killed by a signal, or running).
  int exit_status(int pid);
  void partition(const std::string& node, bool cut);
  // Cuts (or mends) the traffic between two nodes only: `node` drops what
  // it would send to `other` (a blackhole route), so no TCP between them
  // gets anywhere, while both still reach every other node.
  void cut_between(const std::string& node, const std::string& other, bool cut);

  // Writes a CA (unless it exists) and a certificate per name, CN=name, into
  // dir(); the files are dir()/<ca_name>.pem and dir()/<name>.pem, <name>.key.
  void make_certificates(const std::vector<std::string>& names, const std::string& ca_name = "ca");

 private:
  std::string ns(const std::string& node) const { return prefix_ + "-" + node; }
  std::string prefix_;
  std::string dir_;
  std::vector<std::string> nodes_;
  std::map<std::string, std::string> addresses_;
  std::map<std::string, std::string> hub_ends_;
  std::map<int, std::unique_ptr<Child>> children_;  // by pid
};

// Reads a file whole ("" when missing).
std::string slurp(const std::string& path);
// Its lines but the empty ones.
std::vector<std::string> lines_of(const std::string& text);

// Real processes on real time: wait, within a bound, for something to happen.
bool eventually(const std::function<bool()>& cond, std::chrono::seconds bound);

}  // namespace memlend::test
