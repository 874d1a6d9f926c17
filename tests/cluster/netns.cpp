#include "tests/cluster/netns.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unistd.h>

namespace memlend::test {

namespace {

void sh(const std::string& cmd) {
  if (std::system((cmd + " >/dev/null 2>&1").c_str()) != 0) throw std::runtime_error("failed: " + cmd);
}

}  // namespace

std::string netns_unavailable() {
  if (geteuid() != 0) return "network namespaces need root";
  if (std::system("ip -V >/dev/null 2>&1") != 0) return "iproute2's ip is not installed";
  std::string probe = "memlend-probe-" + std::to_string(getpid());
  if (std::system(("ip netns add " + probe + " >/dev/null 2>&1").c_str()) != 0)
    return "this machine does not allow new network namespaces";
  std::system(("ip netns del " + probe + " >/dev/null 2>&1").c_str());
  return {};
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

bool eventually(const std::function<bool()>& cond, std::chrono::seconds bound) {
  auto end = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return cond();
}

NetnsCluster::NetnsCluster(const std::vector<std::string>& nodes) : nodes_(nodes) {
  // Short and unique per process: interface names are limited to 15 bytes.
  prefix_ = "ml" + std::to_string(getpid() % 100000);
  dir_ = make_temp_dir("cluster");
  // A /24 picked from the pid keeps parallel runs apart; nothing routes it.
  std::string net = "10.213." + std::to_string(getpid() % 250 + 1) + ".";
  sh("ip netns add " + ns("hub"));
  sh("ip -n " + ns("hub") + " link add br0 type bridge");
  sh("ip -n " + ns("hub") + " link set br0 up");
  sh("ip -n " + ns("hub") + " link set lo up");
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const std::string& n = nodes[i];
    std::string a = prefix_ + "a" + std::to_string(i), b = prefix_ + "b" + std::to_string(i);
    sh("ip netns add " + ns(n));
    sh("ip -n " + ns(n) + " link set lo up");
    sh("ip -n " + ns(n) + " link add " + a + " type veth peer name " + b + " netns " + ns("hub"));
    sh("ip -n " + ns("hub") + " link set " + b + " master br0 up");
    addresses_[n] = net + std::to_string(i + 10);
    hub_ends_[n] = b;
    sh("ip -n " + ns(n) + " addr add " + addresses_[n] + "/24 dev " + a);
    sh("ip -n " + ns(n) + " link set " + a + " up");
  }
}

NetnsCluster::~NetnsCluster() {
  for (auto& [pid, child] : children_) child->stop(5);
  for (const auto& n : nodes_) std::system(("ip netns del " + ns(n) + " >/dev/null 2>&1").c_str());
  std::system(("ip netns del " + ns("hub") + " >/dev/null 2>&1").c_str());
  if (!std::getenv("MEMLEND_KEEP_TEST_DIR")) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

int NetnsCluster::start(const std::string& node, const std::vector<std::string>& argv, const std::string& log,
                        bool host_mounts) {
  std::vector<std::string> full{"/usr/sbin/ip", "netns", "exec", ns(node)};
  if (host_mounts) full = {"/usr/bin/nsenter", "--net=/run/netns/" + ns(node), "--"};
  else if (::access(full[0].c_str(), X_OK) != 0) full[0] = "/sbin/ip";
  full.insert(full.end(), argv.begin(), argv.end());
  ChildOptions options;
  options.log_file = dir_ + "/" + log;
  options.workdir = dir_;
  auto child = std::make_unique<Child>(full, options);
  int pid = child->pid();
  children_[pid] = std::move(child);
  return pid;
}

void NetnsCluster::kill9(int pid) {
  Child& c = *children_.at(pid);
  c.kill9();
  c.wait(std::chrono::seconds(10));
}

bool NetnsCluster::alive(int pid) { return children_.at(pid)->running(); }

int NetnsCluster::exit_status(int pid) {
  Child& c = *children_.at(pid);
  // Once it is not running it is reaped, and wait() only reports.
  int status = c.running() ? -1 : c.wait(std::chrono::milliseconds(0));
  return status >= 0 ? status : -1;
}

void NetnsCluster::stop(int pid) { children_.at(pid)->stop(5); }

void NetnsCluster::partition(const std::string& node, bool cut) {
  sh("ip -n " + ns("hub") + " link set " + hub_ends_.at(node) + (cut ? " down" : " up"));
}

void NetnsCluster::cut_between(const std::string& node, const std::string& other, bool cut) {
  sh("ip -n " + ns(node) + " route " + (cut ? "add" : "del") + " blackhole " + addresses_.at(other) + "/32");
}

void NetnsCluster::make_certificates(const std::vector<std::string>& names, const std::string& ca_name) {
  std::string d = dir_ + "/";
  // A CA made once signs every later certificate of its name.
  if (::access((d + ca_name + ".pem").c_str(), R_OK) != 0)
    sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=" + ca_name + " -keyout " + d + ca_name +
       ".key -out " + d + ca_name + ".pem");
  for (const auto& n : names) {
    sh("openssl req -newkey rsa:2048 -nodes -subj /CN=" + n + " -keyout " + d + n + ".key -out " + d + n + ".csr");
    sh("openssl x509 -req -days 2 -in " + d + n + ".csr -CA " + d + ca_name + ".pem -CAkey " + d + ca_name +
       ".key -CAcreateserial -out " + d + n + ".pem");
  }
}

}  // namespace memlend::test
