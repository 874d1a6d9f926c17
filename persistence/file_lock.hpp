// The exclusive lock that keeps a second controller off a database: flock(2)
// on a file beside it (`<db>-lock`), which the kernel releases when the
// holder dies, even by kill -9. A file of its own, because closing any
// descriptor of the database itself would drop SQLite's POSIX locks.
#pragma once

#include "core/expected.hpp"

#include <string>

namespace memlend::store {

class FileLock {
 public:
  FileLock() = default;
  ~FileLock();
  FileLock(FileLock&& o) noexcept;
  FileLock& operator=(FileLock&& o) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

  // Locks `db_path`-lock without waiting; the error names the database and,
  // when it can, the process that holds it.
  static Expected<FileLock> acquire(const std::string& db_path);
  static std::string lock_path(const std::string& db_path) { return db_path + "-lock"; }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace memlend::store
