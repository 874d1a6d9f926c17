// A child process the test can watch and kill: a donor to `kill -9`
// mid-workload, a recipient to lose, a VMM stand-in. Every wait is bounded
// and the destructor kills and reaps, so no test leaves a process behind.
#pragma once

#include <chrono>
#include <string>
#include <sys/types.h>
#include <vector>

namespace memlend::test {

class Child {
 public:
  // argv[0] is the program. `keep_fd` (if >= 0) stays open in the child.
  explicit Child(const std::vector<std::string>& argv, int keep_fd = -1);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Reads until `needle` shows up in stdout (or stderr); returns that whole
  // line, or "" when the child ended or the wait ran out first.
  std::string wait_stdout(const std::string& needle, std::chrono::milliseconds timeout);
  std::string wait_stderr(const std::string& needle, std::chrono::milliseconds timeout);
  void kill9();
  // Exit status, -signal when killed by a signal, or -1000 when it had to be
  // killed at the deadline.
  int wait(std::chrono::milliseconds timeout);

  pid_t pid() const { return pid_; }
  const std::string& out() const { return out_; }
  const std::string& err() const { return err_; }

 private:
  bool pump(std::chrono::milliseconds timeout);
  std::string wait_in(std::string& buf, const std::string& needle, std::chrono::milliseconds timeout);
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  std::string out_, err_;
  bool reaped_ = false;
  int status_ = 0;
};

}  // namespace memlend::test
