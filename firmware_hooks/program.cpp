#include "firmware_hooks/program.hpp"

#include "core/text.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace memlend::platform {

using Clock = std::chrono::steady_clock;

std::string in_quotes(std::string_view text) { return "'" + one_line(text) + "'"; }

namespace {

std::string system_error(const std::string& what, int err) { return what + ": " + std::strerror(err); }

int ms_until(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

// A spawned program's process group, which ends with the program: killed and
// the program reaped, whatever way run_program() leaves.
class Group {
 public:
  explicit Group(pid_t pid) : pid_(pid) {}
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
  ~Group() {
    if (!reaped_) reap();
  }

  // Whether the program has exited; it stays a zombie, unreaped, so that its
  // id, which is the group's, cannot be another process's while the group is killed.
  bool exited() {
    if (exited_) return true;
    siginfo_t info{};
    int r = ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT);
    // Only when SIGCHLD is ignored does the kernel reap it for us: ECHILD.
    if (r == 0 && info.si_pid == pid_) exited_ = true;
    if (r != 0 && errno == ECHILD) exited_ = lost_ = true;
    return exited_;
  }

  void kill() {
    if (!lost_) ::kill(-pid_, SIGKILL);
  }

  // Kills what is left of the group, the program too if it still runs, and reaps it.
  int reap() {
    kill();
    reaped_ = true;
    int status = 0;
    if (lost_) return status;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
  }

  bool lost() const { return lost_; }

 private:
  pid_t pid_;
  bool exited_ = false;
  bool lost_ = false;
  bool reaped_ = false;
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// A descriptor that polls readable once `pid` exits, or -1: kernels before
// 5.3 have none, and the exit is then polled for.
int open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  return -1;
#endif
}

// Enough for a shell script to find its tools, and nothing of memlend's.
char* const clean_environment[] = {const_cast<char*>("PATH=/usr/sbin:/usr/bin:/sbin:/bin"),
                                   const_cast<char*>("LC_ALL=C"), nullptr};

// posix_spawn, not fork: memlend has many threads and much memory mapped.
Expected<pid_t> spawn(const std::string& path, const std::vector<std::string>& args, int out_fd,
                      const ProgramLimits& limits) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(path.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  ::posix_spawn_file_actions_init(&actions);
  ::posix_spawnattr_init(&attr);
  int err = ::posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  if (!err) err = ::posix_spawn_file_actions_adddup2(&actions, out_fd, 1);
  if (!err && limits.with_stderr) err = ::posix_spawn_file_actions_adddup2(&actions, out_fd, 2);
  // Descriptors memlend opened without O_CLOEXEC (a library's) stay behind too.
  if (!err) err = ::posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  if (!err) err = ::posix_spawn_file_actions_addchdir_np(&actions, limits.workdir.c_str());
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  short flags = POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (!err) err = ::posix_spawnattr_setflags(&attr, flags);
  if (!err) err = ::posix_spawnattr_setpgroup(&attr, 0);
  if (!err) err = ::posix_spawnattr_setsigmask(&attr, &none);
  if (!err) err = ::posix_spawnattr_setsigdefault(&attr, &all);
  pid_t pid = -1;
  if (!err) err = ::posix_spawn(&pid, path.c_str(), &actions, &attr, argv.data(), clean_environment);
  ::posix_spawn_file_actions_destroy(&actions);
  ::posix_spawnattr_destroy(&attr);
  if (err) return Error{system_error("cannot run " + in_quotes(path), err), ErrorCode::unavailable};
  return pid;
}

std::string mode_text(mode_t mode) {
  char octal[8];
  std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode & 07777));
  return octal;
}

}  // namespace

Expected<void> check_trusted(const std::string& what, const struct stat& st) {
  uid_t me = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != me)
    return Error{what + ": owned by uid " + std::to_string(st.st_uid) + ", neither root nor memlend's user (uid " +
                     std::to_string(me) + "): not run",
                 ErrorCode::invalid_input};
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return Error{what + ": writable by its group or by others (mode " + mode_text(st.st_mode) + "): not run",
                 ErrorCode::invalid_input};
  return {};
}

Expected<void> check_trusted_program(const std::string& what, const std::string& path) {
  if (path.empty() || path.front() != '/') return Error{what + ": not an absolute path", ErrorCode::invalid_input};
  std::string dir = path.substr(0, std::max<std::size_t>(1, path.rfind('/')));
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Error{system_error(what, errno), ErrorCode::unavailable};
  if (auto ok = check_trusted(what + "'s directory " + in_quotes(dir), st); !ok) return ok;
  if (::stat(path.c_str(), &st) != 0) return Error{system_error(what, errno), ErrorCode::unavailable};
  if (!S_ISREG(st.st_mode)) return Error{what + ": not a regular file", ErrorCode::unavailable};
  if (auto ok = check_trusted(what, st); !ok) return ok;
  if (!(st.st_mode & (S_IXUSR | S_IXGRP | S_IXOTH))) return Error{what + ": not executable", ErrorCode::unavailable};
  return {};
}

Expected<ProgramEnd> run_program(const std::string& path, const std::vector<std::string>& args,
                                 const ProgramLimits& limits) {
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) return Error{system_error("pipe", errno), ErrorCode::io};
  Fd out(ends[0]), in(ends[1]);
  auto pid = spawn(path, args, in.get(), limits);
  in.reset();  // the program's copy is what stays open, so that its end is our EOF
  if (!pid) return pid.error();
  Group group(*pid);
  Fd exit_fd(open_pidfd(*pid));

  auto deadline = Clock::now() + limits.timeout;
  ProgramEnd f;
  bool eof = false, late = false, left_killed = false;
  for (;;) {
    // Asked once per round: the program may exit between two askings, and a
    // round that saw it running, then exited, polled nothing until the
    // deadline (a hook that answered at once took its whole timeout).
    const bool exited = group.exited();
    if (eof && exited) break;
    // What the program left running in its group may hold its stdout open.
    if (exited && !left_killed) {
      group.kill();
      left_killed = true;
    }
    int wait_ms = ms_until(deadline);
    if (wait_ms == 0) {
      late = true;
      break;
    }
    pollfd p[2];
    nfds_t n = 0;
    if (!eof) p[n++] = {out.get(), POLLIN, 0};
    if (!exited) {
      if (exit_fd.get() >= 0)
        p[n++] = {exit_fd.get(), POLLIN, 0};
      else
        wait_ms = std::min(wait_ms, 10);
    }
    int ready = ::poll(p, n, wait_ms);
    if (ready < 0 && errno != EINTR) return Error{system_error("poll", errno), ErrorCode::io};
    if (ready <= 0 || eof || !(p[0].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    char chunk[65536];
    ssize_t got = ::read(out.get(), chunk, sizeof chunk);
    if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
      eof = true;
    } else if (got > 0) {
      std::size_t room = limits.max_output - f.out.size();
      f.out.append(chunk, std::min(room, static_cast<std::size_t>(got)));
      if (static_cast<std::size_t>(got) > room) {
        f.cut = true;
        break;
      }
    }
  }
  int status = group.reap();
  if (f.cut) return f;
  if (late)
    return Error{"no answer within " + std::to_string(limits.timeout.count()) + " ms: killed", ErrorCode::timed_out};
  if (group.lost()) return Error{"its exit status was lost (SIGCHLD is ignored)", ErrorCode::failed};
  if (WIFSIGNALED(status)) f.signal = WTERMSIG(status);
  if (WIFEXITED(status)) f.status = WEXITSTATUS(status);
  return f;
}

}  // namespace memlend::platform
