#include "rdma/mirror.hpp"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace memlend::rdma {

std::string mirror_path(const std::string& dir, const std::string& name) {
  std::string d = dir.empty() ? "." : dir;
  if (d.back() != '/') d += '/';
  return d + name + ".mirror";
}

Status remove_mirror(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return sys_error("mirror " + path, errno);
  return ok();
}

Expected<std::shared_ptr<MirrorFile>> MirrorFile::open(const std::string& dir, const std::string& name,
                                                       std::uint64_t bytes, const MirrorOptions& options) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    return Error{"mirror name '" + name + "' is not a plain file name"};
  std::string path = mirror_path(dir, name);
  // O_NOFOLLOW: a symlink planted in a shared directory must not redirect a
  // VM's memory into another file.
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return sys_error("mirror " + path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_error("mirror " + path, errno);
  if (!S_ISREG(st.st_mode)) return Error{"mirror " + path + ": not a regular file"};
  // A file left by someone else with looser rights is tightened, not trusted.
  if ((st.st_mode & 0077) != 0 && ::fchmod(fd.get(), 0600) != 0) return sys_error("mirror " + path, errno);
  if (static_cast<std::uint64_t>(st.st_size) < bytes && ::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0)
    return sys_error("mirror " + path + ": sizing", errno);
  // Blocks are written past the page cache where the file system allows it:
  // the recipient borrows memory because it is short of it, and a cached
  // copy of its remote memory would take that much again, besides a copy of
  // every block on the recipient's CPUs. Opened by name a second time, so it
  // must turn out to be the same file; a file system without O_DIRECT (tmpfs)
  // keeps the one descriptor.
  UniqueFd direct(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_DIRECT));
  struct stat dst {};
  if (direct && (::fstat(direct.get(), &dst) != 0 || dst.st_dev != st.st_dev || dst.st_ino != st.st_ino))
    direct.reset();
  return std::shared_ptr<MirrorFile>(new MirrorFile(path, std::move(fd), std::move(direct), bytes, options));
}

MirrorFile::MirrorFile(std::string path, UniqueFd fd, UniqueFd direct, std::uint64_t bytes,
                       const MirrorOptions& options)
    : path_(std::move(path)),
      fd_(std::move(fd)),
      direct_fd_(std::move(direct)),
      direct_ok_(bool(direct_fd_)),
      bytes_(bytes),
      options_(options),
      last_sync_(Clock::now()) {}

MirrorFile::~MirrorFile() {
  if (fd_ && options_.fsync != FsyncPolicy::never) ::fdatasync(fd_.get());
}

namespace {

// Writes all of it, or says why not (errno).
bool pwrite_all(int fd, const std::uint8_t* p, std::size_t length, std::uint64_t offset) {
  while (length > 0) {
    ssize_t n = ::pwrite(fd, p, length, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      return false;
    }
    p += n;
    offset += static_cast<std::uint64_t>(n);
    length -= static_cast<std::size_t>(n);
  }
  return true;
}

// What O_DIRECT asks of offset, length and buffer on every file system we
// meet (512 on most, 4096 on some).
constexpr std::uint64_t direct_align = 4096;
// Below this a write waits for the device longer than the page cache takes
// to copy it: with 4 KiB blocks, direct writes halved write throughput and
// stretched the fault p99 that waits for evictions.
constexpr std::uint64_t direct_min = 1 << 20;

}  // namespace

Status MirrorFile::write(std::uint64_t offset, const void* src, std::size_t length) {
  const auto* p = static_cast<const std::uint8_t*>(src);
  bool aligned = (offset | length | reinterpret_cast<std::uintptr_t>(p)) % direct_align == 0;
  if (aligned && length >= direct_min && direct_ok_.load(std::memory_order_relaxed)) {
    if (pwrite_all(direct_fd_.get(), p, length, offset)) return after_write();
    // Refused (a file system that opens with O_DIRECT but will not write so,
    // or memory it cannot pin): through the page cache, this time and, if
    // refused outright, from now on. A real I/O error shows below again.
    if (errno == EINVAL) direct_ok_ = false;
  }
  while (length > 0) {
    ssize_t n = ::pwrite(fd_.get(), p, length, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return sys_error("mirror " + path_ + ": write", n < 0 ? errno : EIO);
    p += n;
    offset += static_cast<std::uint64_t>(n);
    length -= static_cast<std::size_t>(n);
  }
  return after_write();
}

Status MirrorFile::read(std::uint64_t offset, void* dst, std::size_t length) const {
  auto* p = static_cast<std::uint8_t*>(dst);
  while (length > 0) {
    ssize_t n = ::pread(fd_.get(), p, length, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("mirror " + path_ + ": read", errno);
    if (n == 0) return Error{"mirror " + path_ + ": shorter than expected (truncated by someone?)"};
    p += n;
    offset += static_cast<std::uint64_t>(n);
    length -= static_cast<std::size_t>(n);
  }
  return ok();
}

Status MirrorFile::after_write() {
  switch (options_.fsync) {
    case FsyncPolicy::never: return ok();
    case FsyncPolicy::always: return sync();
    case FsyncPolicy::interval: {
      {
        std::lock_guard<std::mutex> lock(sync_mu_);
        if (Clock::now() - last_sync_ < options_.interval) return ok();
        last_sync_ = Clock::now();
      }
      return sync();
    }
  }
  return ok();
}

Status MirrorFile::sync() {
  if (::fdatasync(fd_.get()) != 0) return sys_error("mirror " + path_ + ": fdatasync", errno);
  syncs_.fetch_add(1);
  return ok();
}

Status MirrorFile::resize(std::uint64_t bytes) {
  if (::ftruncate(fd_.get(), static_cast<off_t>(bytes)) != 0) return sys_error("mirror " + path_ + ": resize", errno);
  bytes_ = bytes;
  return ok();
}

Status MirrorFile::punch(std::uint64_t offset, std::uint64_t length) {
  if (length == 0) return ok();
  if (::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) == 0)
    return ok();
  if (errno != EOPNOTSUPP) return sys_error("mirror " + path_ + ": punch", errno);
  // A datastore without holes: zeros, written, are just as good a copy.
  static const std::vector<std::uint8_t> zeros(1 << 20);
  for (std::uint64_t done = 0; done < length;) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(length - done, zeros.size()));
    if (auto s = write(offset + done, zeros.data(), n); !s) return s;
    done += n;
  }
  return ok();
}

Status MirrorFile::remove() { return remove_mirror(path_); }

Expected<std::vector<std::pair<std::uint64_t, std::uint64_t>>> MirrorFile::data_ranges(std::uint64_t offset,
                                                                                       std::uint64_t length) const {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> out;
  std::uint64_t end = offset + length;
  std::uint64_t at = offset;
  while (at < end) {
    off_t data = ::lseek(fd_.get(), static_cast<off_t>(at), SEEK_DATA);
    if (data < 0 && errno == ENXIO) break;  // only a hole from here on
    if (data < 0) {
      // A file system without SEEK_DATA: everything counts as data.
      out.emplace_back(at, end - at);
      break;
    }
    auto d = static_cast<std::uint64_t>(data);
    if (d >= end) break;
    off_t hole = ::lseek(fd_.get(), data, SEEK_HOLE);
    std::uint64_t h = hole < 0 ? end : std::min<std::uint64_t>(static_cast<std::uint64_t>(hole), end);
    out.emplace_back(d, h - d);
    at = h;
  }
  return out;
}

}  // namespace memlend::rdma
