// Runs the memlend binary as a real child process, with a bounded wait: a
// test that hangs would hide the bug it is looking for.
#pragma once

#include <string>
#include <vector>

namespace memlend::test {

struct ProcessResult {
  int status = -1;       // exit status, or -1 when killed
  bool timed_out = false;
  std::string out;
  std::string err;
};

// argv[0] is the program. The child is killed after `timeout_s` seconds.
ProcessResult run_process(const std::vector<std::string>& argv, double timeout_s = 120,
                          const std::string& workdir = {});

// A fresh empty directory under the system's temporary directory.
std::string make_temp_dir(const std::string& tag);

}  // namespace memlend::test
