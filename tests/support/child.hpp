// A server a test starts and must always stop: Prometheus, or memlend itself.
// Its stdout and stderr go to files (a pipe nobody reads would fill and stall
// it), and the destructor stops it, politely first, so that a failing
// assertion never leaves a process behind.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace memlend::test {

class ChildProcess {
 public:
  // argv[0] is the program; output goes to <log_prefix>.out and <log_prefix>.err.
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_prefix);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool running();
  // SIGTERM, then SIGKILL after grace_s; the exit status, or -1 when killed by a signal.
  int stop(double grace_s = 10);
  // Waits at most timeout_s for it to exit by itself: its status, or -2 if it still runs.
  int wait_exit(double timeout_s);
  std::string out() const;
  std::string err() const;

 private:
  pid_t pid_ = -1;
  int status_ = -2;
  std::string prefix_;
};

std::string read_file(const std::string& path);

}  // namespace memlend::test
