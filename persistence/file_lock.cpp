#include "persistence/file_lock.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/file.h>
#include <unistd.h>
#include <utility>

namespace memlend::store {

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);
}

FileLock::FileLock(FileLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}

FileLock& FileLock::operator=(FileLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

Expected<FileLock> FileLock::acquire(const std::string& db_path) {
  std::string path = lock_path(db_path);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return Error{db_path + ": cannot create its lock file " + path + " (" + std::strerror(errno) +
                 "); memlend needs write access to the database's directory"};
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    // The holder wrote its pid when it took the lock; a torn read only loses the pid.
    char buf[32] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    ::close(fd);
    if (err != EWOULDBLOCK)
      return Error{db_path + ": cannot lock " + path + " (" + std::strerror(err) + ")"};
    std::string holder = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    return Error{db_path + ": in use by another memlend process" +
                 (holder.empty() ? std::string() : " (pid " + holder + ")") +
                 "; stop it first: two controllers on one database would lend the same memory twice"};
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  // The pid only serves the message another process prints; the lock holds without it.
  bool noted = ::ftruncate(fd, 0) == 0 && ::pwrite(fd, pid.data(), pid.size(), 0) > 0;
  (void)noted;
  return FileLock(fd);
}

}  // namespace memlend::store
