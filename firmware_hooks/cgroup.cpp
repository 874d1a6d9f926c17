#include "firmware_hooks/cgroup.hpp"

#include "firmware_hooks/host_proc.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sstream>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace memlend::cgroup {

namespace {

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string part;
  std::istringstream in(text);
  while (std::getline(in, part, sep)) out.push_back(part);
  return out;
}

bool has_item(const std::string& list, char sep, const std::string& item) {
  for (const auto& i : split(list, sep))
    if (i == item) return true;
  return false;
}

// Files of /proc and of a cgroup: small, and "" when unreadable. The bound
// is for a mountinfo of a host with thousands of mounts.
std::string slurp(const std::string& path) {
  std::string text;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char chunk[8192];
  ssize_t n;
  while (text.size() < (8u << 20) && (n = ::read(fd, chunk, sizeof chunk)) > 0)
    text.append(chunk, static_cast<std::size_t>(n));
  ::close(fd);
  return text;
}

Error sys_error(const std::string& what, int err) {
  // No right to a cgroup is a machine that cannot have one, not a failure.
  ErrorCode code = err == EACCES || err == EPERM || err == EROFS ? ErrorCode::unavailable : ErrorCode::io;
  return Error{"cgroup: " + what + ": " + std::strerror(err), code};
}

Expected<void> put(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return sys_error("open " + path, errno);
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return sys_error("write " + text + " to " + path, n < 0 ? err : EIO);
  return {};
}

struct Place {
  Version version;
  std::string dir;  // this process's memory cgroup
};

// The hierarchy that holds the memory controller (a v1 one when there is one:
// a controller serves only one hierarchy), and where this process is in it.
Expected<Place> own_place() {
  auto dir = platform::host_proc::cgroup_dir(slurp("/proc/self/mountinfo"), slurp("/proc/self/cgroup"), "memory");
  if (!dir) return Error{"cgroup: " + dir.error().message, ErrorCode::unavailable};
  return Place{dir->v1 ? Version::v1 : Version::v2, dir->path};
}

// Under v2 a cgroup's children get the memory controller only when it is in
// its subtree_control, which a cgroup holding processes (this one, unless it
// is the root) may not set; its parent, where the controller is usually
// enabled already, holds the new cgroup then, beside this process's own.
Expected<std::string> v2_parent(const std::string& own) {
  auto enabled = [](const std::string& dir) {
    std::string list = slurp(dir + "/cgroup.subtree_control");
    for (char& c : list)
      if (c == '\n') c = ' ';
    return has_item(list, ' ', "memory");
  };
  if (enabled(own) || put(own + "/cgroup.subtree_control", "+memory")) return own;
  auto slash = own.rfind('/');
  std::string up = slash == std::string::npos ? std::string() : own.substr(0, slash);
  if (!up.empty() && enabled(up)) return up;
  return Error{"cgroup: the memory controller is not delegated below " + own, ErrorCode::unavailable};
}

std::uint64_t number(const std::string& text) {
  if (text.compare(0, 3, "max") == 0) return std::numeric_limits<std::uint64_t>::max();
  return std::strtoull(text.c_str(), nullptr, 10);
}

// A "key value" line of memory.stat, memory.events or memory.oom_control.
std::uint64_t keyed(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 && line[key.size()] == ' ')
      return number(line.substr(key.size() + 1));
  return 0;
}

}  // namespace

MemoryCgroup::MemoryCgroup(Version version, std::string path, std::string home)
    : version_(version), path_(std::move(path)), home_(std::move(home)) {}

MemoryCgroup::MemoryCgroup(MemoryCgroup&& other) noexcept { *this = std::move(other); }

MemoryCgroup& MemoryCgroup::operator=(MemoryCgroup&& other) noexcept {
  if (this == &other) return *this;
  (void)remove();
  version_ = other.version_;
  path_ = std::exchange(other.path_, std::string());
  home_ = std::move(other.home_);
  return *this;
}

MemoryCgroup::~MemoryCgroup() { (void)remove(); }

Expected<MemoryCgroup> MemoryCgroup::create(const std::string& name, std::uint64_t limit_bytes) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    return Error{"cgroup: '" + name + "' is not a cgroup name", ErrorCode::invalid_input};
  auto place = own_place();
  if (!place) return place.error();
  std::string parent = place->dir;
  if (place->version == Version::v2) {
    auto p = v2_parent(place->dir);
    if (!p) return p.error();
    parent = *p;
  }
  std::string path = parent + "/" + name;
  // One left by a run that was killed: empty, or rmdir fails and says so below.
  ::rmdir(path.c_str());
  if (::mkdir(path.c_str(), 0755) != 0) return sys_error("mkdir " + path, errno);
  MemoryCgroup group(place->version, path, place->dir);
  auto limited = put(path + (place->version == Version::v1 ? "/memory.limit_in_bytes" : "/memory.max"),
                     std::to_string(limit_bytes));
  if (!limited) return limited.error();
  return group;
}

Expected<void> MemoryCgroup::add(pid_t pid) { return put(procs_file(), std::to_string(pid)); }

Expected<MemoryStats> MemoryCgroup::stats() const {
  if (path_.empty()) return Error{"cgroup: already removed", ErrorCode::failed};
  // The same figures under each version's names: files, then keys of
  // memory.stat, then the file whose "oom_kill" line counts the kills.
  struct Names {
    const char *usage, *peak, *limit, *anon, *file, *dirty, *writeback, *events;
  };
  static constexpr Names v1{"memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.limit_in_bytes", "rss",
                            "cache", "dirty", "writeback", "memory.oom_control"};
  static constexpr Names v2{"memory.current", "memory.peak", "memory.max", "anon",
                            "file", "file_dirty", "file_writeback", "memory.events"};
  const Names& n = version_ == Version::v1 ? v1 : v2;
  auto in = [&](const char* file) { return path_ + "/" + file; };
  std::string stat = slurp(in("memory.stat"));
  if (stat.empty()) return Error{"cgroup: cannot read " + in("memory.stat"), ErrorCode::io};
  MemoryStats s;
  s.usage = number(slurp(in(n.usage)));
  s.peak = number(slurp(in(n.peak)));
  s.limit = number(slurp(in(n.limit)));
  s.anon = keyed(stat, n.anon);
  s.file = keyed(stat, n.file);
  s.file_dirty = keyed(stat, n.dirty);
  s.file_writeback = keyed(stat, n.writeback);
  s.oom_kills = keyed(slurp(in(n.events)), "oom_kill");
  return s;
}

Expected<void> MemoryCgroup::remove() {
  if (path_.empty()) return {};
  Expected<void> result;
  // A process that is still exiting stays listed a moment: rmdir says EBUSY.
  for (int attempt = 0;; ++attempt) {
    std::istringstream procs(slurp(procs_file()));
    for (std::string pid; std::getline(procs, pid);)
      if (!pid.empty()) (void)put(home_ + "/cgroup.procs", pid);
    if (::rmdir(path_.c_str()) == 0 || errno == ENOENT) break;
    if (errno != EBUSY || attempt >= 100) {
      result = sys_error("rmdir " + path_, errno);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  path_.clear();
  return result;
}

}  // namespace memlend::cgroup
