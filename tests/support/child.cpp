#include "tests/support/child.hpp"

#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace memlend::test {

namespace {

int output_file(const std::string& log_prefix, const char* stream) {
  int fd = log_prefix.empty()
               ? memfd_create(stream, MFD_CLOEXEC)
               : open((log_prefix + "." + stream).c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("Child: cannot open its " + std::string(stream) + " file " + log_prefix);
  return fd;
}

// All that was written to `fd` so far; pread leaves the offset the child writes at alone.
std::string contents(int fd) {
  std::string s;
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0) return s;
  s.resize(static_cast<std::size_t>(st.st_size));
  ssize_t n = pread(fd, s.data(), s.size(), 0);
  s.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return s;
}

}  // namespace

Child::Child(const std::vector<std::string>& argv, Options options) {
  if (options.log_file.empty()) {
    out_fd_ = output_file(options.log_prefix, "out");
    err_fd_ = output_file(options.log_prefix, "err");
  } else {
    out_fd_ = open(options.log_file.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    err_fd_ = out_fd_ < 0 ? -1 : fcntl(out_fd_, F_DUPFD_CLOEXEC, 0);
    if (err_fd_ < 0) throw std::runtime_error("Child: cannot open its log " + options.log_file);
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("Child: fork");
  if (pid_ == 0) {
    // Its own process group, so that stopping it reaches whatever it forks.
    setpgid(0, 0);
    dup2(out_fd_, 1);
    dup2(err_fd_, 2);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    if (options.keep_fd >= 0) fcntl(options.keep_fd, F_SETFD, 0);
    if (!options.workdir.empty() && chdir(options.workdir.c_str()) != 0) _exit(127);
    if (!options.cgroup_procs.empty()) {
      // "0" is the writer itself; only async-signal-safe calls between fork and exec.
      int cg = open(options.cgroup_procs.c_str(), O_WRONLY | O_CLOEXEC);
      if (cg < 0 || write(cg, "0", 1) != 1) {
        static const char why[] = "Child: cannot join its cgroup\n";
        ssize_t said = write(2, why, sizeof why - 1);
        (void)said;
        _exit(126);
      }
      close(cg);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  setpgid(pid_, pid_);
}

Child::~Child() {
  stop();
  close(out_fd_);
  close(err_fd_);
}

bool Child::reap(bool block) {
  if (reaped_) return true;
  int st = 0;
  if (waitpid(pid_, &st, block ? 0 : WNOHANG) != pid_) return false;
  reaped_ = true;
  status_ = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
  return true;
}

bool Child::running() { return !reap(false); }

void Child::kill9() {
  if (!reaped_) kill(-pid_, SIGKILL);
}

int Child::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!reap(false)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill9();
      reap(true);
      status_ = killed_at_deadline;
      return status_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

int Child::stop(double grace_s) {
  if (reaped_) return status_;
  kill(-pid_, SIGTERM);
  int status = wait(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(grace_s)));
  return status == killed_at_deadline ? -SIGKILL : status;
}

std::string Child::wait_in(int fd, const std::string& needle, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // Whether it ended is asked before reading, so that all it wrote is read.
    bool ended = !running();
    std::string text = contents(fd);
    auto at = text.find(needle);
    if (at != std::string::npos) {
      auto start = text.rfind('\n', at);
      start = start == std::string::npos ? 0 : start + 1;
      auto end = text.find('\n', at);
      // A line still being written waits for its end, unless nothing more will come.
      if (end != std::string::npos || ended) return text.substr(start, end == std::string::npos ? end : end - start);
    }
    if (ended || std::chrono::steady_clock::now() >= deadline) return "";
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

std::string Child::wait_stdout(const std::string& needle, std::chrono::milliseconds timeout) {
  return wait_in(out_fd_, needle, timeout);
}

std::string Child::wait_stderr(const std::string& needle, std::chrono::milliseconds timeout) {
  return wait_in(err_fd_, needle, timeout);
}

std::string Child::out() const { return contents(out_fd_); }
std::string Child::err() const { return contents(err_fd_); }

ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s, const std::string& workdir) {
  ChildOptions options;
  options.workdir = workdir;
  Child child(argv, options);
  int status = child.wait(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(timeout_s)));
  ProcessResult r;
  r.timed_out = status == Child::killed_at_deadline;
  r.status = status >= 0 ? status : -1;
  r.out = child.out();
  r.err = child.err();
  return r;
}

std::string make_temp_dir(const std::string& tag) {
  std::string pattern = std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/memlend-" + tag + "-XXXXXX";
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp");
  return pattern;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string find_program(const std::string& name) {
  std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  std::istringstream dirs(path + ":/usr/bin:/bin:/usr/sbin:/sbin");
  for (std::string dir; std::getline(dirs, dir, ':');)
    if (!dir.empty() && ::access((dir + "/" + name).c_str(), X_OK) == 0) return dir + "/" + name;
  return {};
}

}  // namespace memlend::test
