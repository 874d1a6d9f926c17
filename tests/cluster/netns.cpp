#include "tests/cluster/netns.hpp"

#include "tests/support/process.hpp"

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>
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
  for (int pid : pids_) stop(pid);
  for (const auto& n : nodes_) std::system(("ip netns del " + ns(n) + " >/dev/null 2>&1").c_str());
  std::system(("ip netns del " + ns("hub") + " >/dev/null 2>&1").c_str());
  if (!std::getenv("MEMLEND_KEEP_TEST_DIR")) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

int NetnsCluster::start(const std::string& node, const std::vector<std::string>& argv, const std::string& log) {
  std::string path = dir_ + "/" + log;
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork");
  if (pid == 0) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    if (chdir(dir_.c_str()) != 0) _exit(127);
    std::vector<std::string> full{"/usr/sbin/ip", "netns", "exec", ns(node)};
    if (::access(full[0].c_str(), X_OK) != 0) full[0] = "/sbin/ip";
    full.insert(full.end(), argv.begin(), argv.end());
    std::vector<char*> args;
    for (auto& s : full) args.push_back(s.data());
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  pids_.push_back(pid);
  return pid;
}

void NetnsCluster::kill9(int pid) {
  ::kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
}

bool NetnsCluster::alive(int pid) {
  if (exited_.count(pid)) return false;
  int status = 0;
  pid_t r = waitpid(pid, &status, WNOHANG);
  if (r == pid) exited_[pid] = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r == 0;
}

int NetnsCluster::exit_status(int pid) {
  auto it = exited_.find(pid);
  return it == exited_.end() ? -1 : it->second;
}

void NetnsCluster::stop(int pid) {
  if (!alive(pid)) return;
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 50 && alive(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  if (alive(pid)) kill9(pid);
}

void NetnsCluster::partition(const std::string& node, bool cut) {
  sh("ip -n " + ns("hub") + " link set " + hub_ends_.at(node) + (cut ? " down" : " up"));
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
