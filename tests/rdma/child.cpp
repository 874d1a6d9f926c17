#include "tests/rdma/child.hpp"

#include <csignal>
#include <fcntl.h>
#include <poll.h>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

namespace memlend::test {

Child::Child(const std::vector<std::string>& argv, int keep_fd) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork");
  if (pid_ == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    if (keep_fd >= 0) ::fcntl(keep_fd, F_SETFD, 0);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  out_fd_ = out[0];
  err_fd_ = err[0];
}

Child::~Child() {
  if (!reaped_) {
    kill9();
    wait(std::chrono::seconds(10));
  }
  if (out_fd_ >= 0) ::close(out_fd_);
  if (err_fd_ >= 0) ::close(err_fd_);
}

bool Child::pump(std::chrono::milliseconds timeout) {
  pollfd p[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  if (out_fd_ < 0 && err_fd_ < 0) return false;
  if (::poll(p, 2, static_cast<int>(timeout.count())) <= 0) return false;
  char buf[65536];
  for (int i = 0; i < 2; ++i) {
    if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    ssize_t n = ::read(p[i].fd, buf, sizeof buf);
    if (n <= 0) {
      ::close(p[i].fd);
      (i == 0 ? out_fd_ : err_fd_) = -1;
    } else {
      (i == 0 ? out_ : err_).append(buf, static_cast<std::size_t>(n));
    }
  }
  return true;
}

std::string Child::wait_in(std::string& buf, const std::string& needle, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto at = buf.find(needle);
    if (at != std::string::npos) {
      auto start = buf.rfind('\n', at);
      start = start == std::string::npos ? 0 : start + 1;
      auto end = buf.find('\n', at);
      return buf.substr(start, end == std::string::npos ? std::string::npos : end - start);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || (out_fd_ < 0 && err_fd_ < 0)) return "";
    pump(left);
  }
}

std::string Child::wait_stdout(const std::string& needle, std::chrono::milliseconds timeout) {
  return wait_in(out_, needle, timeout);
}

std::string Child::wait_stderr(const std::string& needle, std::chrono::milliseconds timeout) {
  return wait_in(err_, needle, timeout);
}

void Child::kill9() {
  if (!reaped_ && pid_ > 0) ::kill(pid_, SIGKILL);
}

int Child::wait(std::chrono::milliseconds timeout) {
  if (reaped_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool killed = false;
  for (;;) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      while (pump(std::chrono::milliseconds(0))) {
      }
      status_ = killed ? -1000 : WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline && !killed) {
      ::kill(pid_, SIGKILL);
      killed = true;
    }
    pump(std::chrono::milliseconds(20));
  }
}

}  // namespace memlend::test
