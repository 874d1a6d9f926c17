// A child process a test starts and must always end: memlend itself, a donor
// to `kill -9` mid-workload, Prometheus, a VMM stand-in. Its stdout and stderr
// go to files, not pipes, because a pipe nobody reads while the test is busy
// elsewhere would fill and stall it. Every wait is bounded, and the destructor
// stops it (politely first), so that a failing assertion never leaves a
// process behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace memlend::test {

// Outside Child: a default argument of Child's own type could not use its
// default member initializers before the class is complete.
struct ChildOptions {
  ChildOptions() = default;
  // Implicit, so that a test writes Child c(argv, dir + "/run").
  ChildOptions(std::string prefix) : log_prefix(std::move(prefix)) {}
  // Output to <log_prefix>.out and .err, which stay for a person to read;
  // empty: to files with no name, gone with the Child.
  std::string log_prefix;
  // Instead of log_prefix: stdout and stderr together, appended to this file,
  // a log that outlives a restart of what writes it.
  std::string log_file;
  int keep_fd = -1;  // a descriptor that stays open in the child
  std::string workdir;
  // A cgroup's cgroup.procs the child joins before exec, so that all it ever
  // charges counts there (memory stays charged where it was first touched).
  std::string cgroup_procs;
};

class Child {
 public:
  using Options = ChildOptions;
  // What wait() returns when the deadline came first and it killed the child.
  static constexpr int killed_at_deadline = -1000;

  // argv[0] is the program.
  explicit Child(const std::vector<std::string>& argv, Options options = {});
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  // Waits until `needle` shows up in stdout (or stderr); returns that whole
  // line, or "" when the child ended or the wait ran out first.
  std::string wait_stdout(const std::string& needle, std::chrono::milliseconds timeout);
  std::string wait_stderr(const std::string& needle, std::chrono::milliseconds timeout);
  void kill9();
  // Exit status, -signal when killed by a signal, or killed_at_deadline.
  int wait(std::chrono::milliseconds timeout);
  // SIGTERM to it and whatever it forked, SIGKILL after grace_s; as wait().
  int stop(double grace_s = 10);
  std::string out() const;
  std::string err() const;

 private:
  bool reap(bool block);
  std::string wait_in(int fd, const std::string& needle, std::chrono::milliseconds timeout);
  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// The output of a child that ran to its end.
struct ProcessResult {
  int status = -1;  // exit status, or -1 when killed
  bool timed_out = false;
  std::string out;
  std::string err;
};

// Runs argv[0] to its end, killing it after `timeout_s` seconds: a test that
// hangs would hide the bug it is looking for.
ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s = 120,
                          const std::string& workdir = {});

// A fresh empty directory under the system's temporary directory.
std::string make_temp_dir(const std::string& tag);

// An executable's path: the first on PATH, else in the system's bin and sbin
// directories (which a test's PATH may lack); "" when there is none.
std::string find_program(const std::string& name);

std::string read_file(const std::string& path);

}  // namespace memlend::test
