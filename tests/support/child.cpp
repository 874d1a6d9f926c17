#include "tests/support/child.hpp"

#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace memlend::test {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const std::string& log_prefix)
    : prefix_(log_prefix) {
  int out = open((prefix_ + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = open((prefix_ + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0 || err < 0) throw std::runtime_error("ChildProcess: cannot open the log files " + prefix_);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("ChildProcess: fork");
  if (pid_ == 0) {
    // Its own process group, so that stopping it reaches whatever it forks.
    setpgid(0, 0);
    dup2(out, 1);
    dup2(err, 2);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  setpgid(pid_, pid_);
  close(out);
  close(err);
}

ChildProcess::~ChildProcess() { stop(); }

bool ChildProcess::running() {
  if (status_ != -2 || pid_ < 0) return false;
  int st = 0;
  if (waitpid(pid_, &st, WNOHANG) == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return false;
  }
  return true;
}

int ChildProcess::wait_exit(double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return -2;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status_;
}

int ChildProcess::stop(double grace_s) {
  if (!running()) return status_;
  kill(-pid_, SIGTERM);
  if (wait_exit(grace_s) != -2) return status_;
  kill(-pid_, SIGKILL);
  int st = 0;
  waitpid(pid_, &st, 0);
  status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return status_;
}

std::string ChildProcess::out() const { return read_file(prefix_ + ".out"); }
std::string ChildProcess::err() const { return read_file(prefix_ + ".err"); }

}  // namespace memlend::test
