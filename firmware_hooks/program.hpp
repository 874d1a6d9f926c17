// Running another program as memlend must: a vendor's hooks (exec.hpp) and
// the tools a support bundle asks (journalctl, qemu --version). It runs in a
// process group of its own, with a minimal environment (nothing of memlend's:
// its secrets' paths, its locale, LD_ variables), stdin from /dev/null, no
// descriptor but 0, 1 and 2, in / unless told otherwise; at its deadline, or when its output grows
// past the limit, the whole group is killed, and whatever it leaves running
// in its group when it exits is killed too.
#pragma once

#include "core/expected.hpp"

#include <chrono>
#include <cstddef>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace memlend::platform {

struct ProgramLimits {
  std::chrono::milliseconds timeout{10000};
  std::size_t max_output = 1 << 20;
  // Its stderr into the same output; otherwise it shares memlend's stderr.
  bool with_stderr = false;
  // Its working directory.
  std::string workdir = "/";
};

struct ProgramEnd {
  int status = 0;  // its exit status, when no signal killed it
  int signal = 0;
  std::string out;
  // It printed more than max_output and was killed; `out` holds the first
  // max_output bytes.
  bool cut = false;
};

// Runs `path` (absolute) with `args`. Errors: ErrorCode::unavailable when it
// cannot be started, timed_out when the deadline came first ("no answer within
// N ms: killed"), io, or failed when its exit status was lost.
Expected<ProgramEnd> run_program(const std::string& path, const std::vector<std::string>& args,
                                 const ProgramLimits& limits);

// Whether `path` may be run as root: an absolute path to a regular, executable
// file that, as its directory, only root or memlend's own user could change
// (sudo's and sshd's rule). `what` names it in the error.
Expected<void> check_trusted_program(const std::string& what, const std::string& path);
// The same rule for a directory, or a file's stat already taken.
Expected<void> check_trusted(const std::string& what, const struct stat& st);

// "'text'", one printable line: a path or a name in a message.
std::string in_quotes(std::string_view text);

}  // namespace memlend::platform
