#define FUSE_USE_VERSION 312
#include "memfs/memory_fs.hpp"

#include <fuse3/fuse_lowlevel.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <vector>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

namespace memlend::memfs {

namespace {

constexpr fuse_ino_t root_ino = FUSE_ROOT_ID;
constexpr double attr_timeout = 1.0;
constexpr std::size_t max_transfer = 1 << 20;

int errno_of(const Error& e) {
  switch (e.code) {
    case ErrorCode::refused: return e.message.find("no lent memory") != std::string::npos ? ENOSPC : EINVAL;
    case ErrorCode::invalid_input: return EINVAL;
    case ErrorCode::timed_out: return ETIMEDOUT;
    default: return EIO;
  }
}

// The mount's backing device in the kernel, which holds its read-ahead and
// dirty-page limits: named by the device number, and there once INIT is
// answered.
bool set_bdi(dev_t dev, const char* knob, const std::string& value) {
  std::ofstream f("/sys/class/bdi/" + std::to_string(major(dev)) + ":" + std::to_string(minor(dev)) + "/" + knob);
  f << value << std::flush;
  return f.good();
}

struct Entry {
  fuse_ino_t ino = 0;
  std::string name;
  std::shared_ptr<rdma::MemoryFile> file;
};

}  // namespace

std::string harden_server_process() {
  std::string missing;
  // The pages this process touches stay resident, so serving a fault never
  // waits for this process's own memory to be paged back in by a reclaim
  // that is itself waiting for the fault to be served. On fault, not all at
  // once: thread stacks and buffers are reserved far larger than used.
  if (::mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0)
    missing += std::string("memory not locked (") + std::strerror(errno) + ")";
  // Its allocations never enter I/O reclaim, which could wait on the dirty
  // pages of the very files it serves (the kernel does this for loop devices
  // and FUSE daemons that ask: PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE).
  if (::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) {
    if (!missing.empty()) missing += "; ";
    missing += std::string("not an I/O flusher (") + std::strerror(errno) + ")";
  }
  return missing;
}

Status check_mountpoint(const std::string& dir) {
  struct stat st {}, parent {};
  if (::stat(dir.c_str(), &st) != 0) return Error{dir + ": " + std::strerror(errno), ErrorCode::invalid_input};
  if (!S_ISDIR(st.st_mode)) return Error{dir + " is not a directory", ErrorCode::invalid_input};
  if (::stat((dir + "/..").c_str(), &parent) != 0) return Error{dir + "/..: " + std::strerror(errno), ErrorCode::invalid_input};
  if (st.st_dev != parent.st_dev || st.st_ino == parent.st_ino)
    return Error{dir + " is a mount point already (busy)", ErrorCode::invalid_input};
  return ok();
}

struct MemoryFs::Impl {
  MountOptions opt;
  fuse_session* se = nullptr;
  std::thread loop;
  std::atomic<bool> loop_done{false};
  std::mutex done_mu;
  std::condition_variable done_cv;
  dev_t dev = 0;
  bool stopped = false;

  mutable std::shared_mutex mu;
  std::map<std::string, std::shared_ptr<Entry>> by_name;
  std::map<fuse_ino_t, std::shared_ptr<Entry>> by_ino;
  fuse_ino_t next_ino = root_ino + 1;

  struct {
    std::atomic<std::uint64_t> reads{0}, writes{0}, punches{0}, truncates{0}, syncs{0}, errors{0}, open{0};
  } counts;

  void log(const std::string& line) const {
    if (opt.log) opt.log(line);
  }

  std::shared_ptr<Entry> find(fuse_ino_t ino) const {
    std::shared_lock<std::shared_mutex> lock(mu);
    auto it = by_ino.find(ino);
    return it == by_ino.end() ? nullptr : it->second;
  }

  struct stat attr_of(const Entry* e) const {
    struct stat st {};
    st.st_uid = opt.owner_uid;
    st.st_gid = opt.owner_gid;
    if (!e) {
      st.st_ino = root_ino;
      st.st_mode = S_IFDIR | 0755;
      st.st_nlink = 2;
      return st;
    }
    auto s = e->file->stats();
    st.st_ino = e->ino;
    st.st_mode = S_IFREG | 0600;
    st.st_nlink = 1;
    st.st_size = static_cast<off_t>(e->file->size());
    st.st_blksize = 4096;
    st.st_blocks = static_cast<blkcnt_t>(s.blocks_placed * e->file->block_bytes() / 512);
    return st;
  }

  void fail(fuse_req_t req, int err) {
    counts.errors++;
    fuse_reply_err(req, err);
  }
  void fail(fuse_req_t req, const Error& e, const char* what, const Entry& entry) {
    log(std::string(what) + " of " + entry.name + " failed: " + e.message);
    fail(req, errno_of(e));
  }
};

namespace {

MemoryFs::Impl* self(fuse_req_t req) { return static_cast<MemoryFs::Impl*>(fuse_req_userdata(req)); }

void reply_entry(fuse_req_t req, MemoryFs::Impl* fs, const Entry& e) {
  fuse_entry_param p {};
  p.ino = e.ino;
  p.attr = fs->attr_of(&e);
  p.attr_timeout = attr_timeout;
  p.entry_timeout = attr_timeout;
  fuse_reply_entry(req, &p);
}

void op_init(void*, fuse_conn_info* conn) {
  // Large transfers: a sequential stream costs one round trip per MiB
  // rather than per 128 KiB. max_readahead only caps the read-ahead, which
  // mount() raises to it.
  conn->max_write = max_transfer;
  conn->max_readahead = max_transfer;
  // Mapped writes reach us from the kernel's write-back, not from write(2):
  // a write-back cache would only add a second copy for write(2) callers.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto* fs = self(req);
  if (parent != root_ino) return fs->fail(req, ENOENT);
  std::shared_ptr<Entry> e;
  {
    std::shared_lock<std::shared_mutex> lock(fs->mu);
    auto it = fs->by_name.find(name);
    if (it != fs->by_name.end()) e = it->second;
  }
  if (!e) return fs->fail(req, ENOENT);
  reply_entry(req, fs, *e);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  auto* fs = self(req);
  if (ino == root_ino) {
    auto st = fs->attr_of(nullptr);
    return (void)fuse_reply_attr(req, &st, attr_timeout);
  }
  auto e = fs->find(ino);
  if (!e) return fs->fail(req, ENOENT);
  auto st = fs->attr_of(e.get());
  fuse_reply_attr(req, &st, attr_timeout);
}

void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info*) {
  auto* fs = self(req);
  auto e = fs->find(ino);
  if (!e) return fs->fail(req, ino == root_ino ? EPERM : ENOENT);
  // Mode and owner are the mount's to set; times are not kept. Size is what
  // a VMM sets (ftruncate to the memdev's size).
  if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) return fs->fail(req, EPERM);
  if (to_set & FUSE_SET_ATTR_SIZE) {
    fs->counts.truncates++;
    if (attr->st_size < 0) return fs->fail(req, EINVAL);
    if (auto s = e->file->resize(static_cast<std::uint64_t>(attr->st_size)); !s)
      return static_cast<std::uint64_t>(attr->st_size) > e->file->capacity() ? fs->fail(req, EFBIG)
                                                                             : fs->fail(req, s.error(), "truncate", *e);
  }
  auto st = fs->attr_of(e.get());
  fuse_reply_attr(req, &st, attr_timeout);
}

void open_entry(fuse_req_t req, MemoryFs::Impl* fs, const Entry& e, fuse_file_info* fi, bool create) {
  if (fi->flags & O_TRUNC) {
    if (auto s = e.file->resize(0); !s) return fs->fail(req, s.error(), "truncate", e);
    (void)e.file->resize(e.file->capacity());
  }
  // The page cache is the local buffer: keep it across opens, and never
  // bypass it (a shared mapping needs it).
  fi->keep_cache = 1;
  fi->direct_io = 0;
  fs->counts.open++;
  if (create) {
    fuse_entry_param p {};
    p.ino = e.ino;
    p.attr = fs->attr_of(&e);
    p.attr_timeout = attr_timeout;
    p.entry_timeout = attr_timeout;
    if (fuse_reply_create(req, &p, fi) != 0) fs->counts.open--;
  } else if (fuse_reply_open(req, fi) != 0) {
    fs->counts.open--;
  }
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  auto* fs = self(req);
  auto e = fs->find(ino);
  if (!e) return fs->fail(req, ino == root_ino ? EISDIR : ENOENT);
  open_entry(req, fs, *e, fi, false);
}

// Only the files memlend made exist; opening one with O_CREAT is an open.
void op_create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t, fuse_file_info* fi) {
  auto* fs = self(req);
  std::shared_ptr<Entry> e;
  if (parent == root_ino) {
    std::shared_lock<std::shared_mutex> lock(fs->mu);
    auto it = fs->by_name.find(name);
    if (it != fs->by_name.end()) e = it->second;
  }
  if (!e) return fs->fail(req, EACCES);
  if (fi->flags & O_EXCL) return fs->fail(req, EEXIST);
  open_entry(req, fs, *e, fi, true);
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  auto* fs = self(req);
  fs->counts.open--;
  fuse_reply_err(req, 0);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  auto* fs = self(req);
  auto e = fs->find(ino);
  if (!e) return fs->fail(req, EBADF);
  fs->counts.reads++;
  std::uint64_t end = e->file->size();
  std::uint64_t at = static_cast<std::uint64_t>(off);
  std::size_t n = at >= end ? 0 : static_cast<std::size_t>(std::min<std::uint64_t>(size, end - at));
  n = std::min(n, max_transfer);
  // One buffer per request thread, made once: answering a fault allocates
  // nothing (see harden_server_process()).
  thread_local std::vector<char> buf(max_transfer);
  if (n > 0)
    if (auto s = e->file->read(at, buf.data(), n); !s) return fs->fail(req, s.error(), "read", *e);
  fuse_reply_buf(req, buf.data(), n);
}

void op_write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t off, fuse_file_info*) {
  auto* fs = self(req);
  auto e = fs->find(ino);
  if (!e) return fs->fail(req, EBADF);
  fs->counts.writes++;
  std::uint64_t at = static_cast<std::uint64_t>(off);
  if (at + size > e->file->capacity()) return fs->fail(req, EFBIG);
  if (auto s = e->file->write(at, data, size); !s) return fs->fail(req, s.error(), "write", *e);
  if (at + size > e->file->size()) (void)e->file->resize(at + size);
  fuse_reply_write(req, size);
}

void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t length, fuse_file_info*) {
  auto* fs = self(req);
  auto e = fs->find(ino);
  if (!e) return fs->fail(req, EBADF);
  if (off < 0 || length <= 0) return fs->fail(req, EINVAL);
  std::uint64_t at = static_cast<std::uint64_t>(off), n = static_cast<std::uint64_t>(length);
  std::uint64_t cap = e->file->capacity();
  if (mode == (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) {
    // What a VMM does when its guest gives memory back: the range is freed
    // at the donor. Past the end there is nothing to free.
    fs->counts.punches++;
    if (at < cap)
      if (auto s = e->file->punch(at, std::min(n, cap - at)); !s) return fs->fail(req, s.error(), "punch", *e);
    return (void)fuse_reply_err(req, 0);
  }
  if (mode == 0 || mode == FALLOC_FL_KEEP_SIZE) {
    // Preallocation: lent memory is there already; only the size may grow.
    if (at + n > cap) return fs->fail(req, ENOSPC);
    if (mode == 0 && at + n > e->file->size()) (void)e->file->resize(at + n);
    return (void)fuse_reply_err(req, 0);
  }
  fs->fail(req, EOPNOTSUPP);
}

void op_fsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  auto* fs = self(req);
  auto e = fs->find(ino);
  if (!e) return fs->fail(req, EBADF);
  fs->counts.syncs++;
  if (auto s = e->file->flush(); !s) return fs->fail(req, s.error(), "fsync", *e);
  fuse_reply_err(req, 0);
}

void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  auto* fs = self(req);
  if (ino != root_ino) return fs->fail(req, ENOTDIR);
  std::vector<std::pair<std::string, fuse_ino_t>> names{{".", root_ino}, {"..", root_ino}};
  {
    std::shared_lock<std::shared_mutex> lock(fs->mu);
    for (auto& [name, e] : fs->by_name) names.emplace_back(name, e->ino);
  }
  std::vector<char> buf(size);
  std::size_t used = 0;
  for (std::size_t i = static_cast<std::size_t>(std::max<off_t>(off, 0)); i < names.size(); ++i) {
    struct stat st {};
    st.st_ino = names[i].second;
    st.st_mode = names[i].second == root_ino ? S_IFDIR : S_IFREG;
    std::size_t need = fuse_add_direntry(req, buf.data() + used, size - used, names[i].first.c_str(), &st,
                                         static_cast<off_t>(i + 1));
    if (need > size - used) break;
    used += need;
  }
  fuse_reply_buf(req, buf.data(), used);
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  auto* fs = self(req);
  struct statvfs sv {};
  sv.f_bsize = sv.f_frsize = 4096;
  std::shared_lock<std::shared_mutex> lock(fs->mu);
  for (auto& [name, e] : fs->by_name) {
    auto s = e->file->stats();
    std::uint64_t block = e->file->block_bytes() / 4096;
    sv.f_blocks += s.slots * block;
    sv.f_bfree += (s.slots - std::min(s.slots, s.blocks_placed)) * block;
  }
  sv.f_bavail = sv.f_bfree;
  sv.f_files = sv.f_ffree = 0;
  sv.f_namemax = 255;
  fuse_reply_statfs(req, &sv);
}

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops {};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.open = op_open;
  ops.create = op_create;
  ops.release = op_release;
  ops.read = op_read;
  ops.write = op_write;
  ops.fallocate = op_fallocate;
  ops.fsync = op_fsync;
  ops.flush = op_flush;
  ops.readdir = op_readdir;
  ops.statfs = op_statfs;
  return ops;
}

}  // namespace

MemoryFs::MemoryFs(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
MemoryFs::~MemoryFs() { stop(); }

Expected<std::unique_ptr<MemoryFs>> MemoryFs::mount(const MountOptions& options) {
  if (auto s = check_mountpoint(options.mountpoint); !s) return s.error();
  auto impl = std::make_shared<Impl>();
  impl->opt = options;
  if (!options.owner_set) {
    impl->opt.owner_uid = ::geteuid();
    impl->opt.owner_gid = ::getegid();
  }
  static const fuse_lowlevel_ops ops = make_ops();
  // allow_other: the VMM may run as its own user; default_permissions: the
  // kernel then checks each file's 0600 against it.
  std::vector<std::string> argv_s{"memlend", "-o", "allow_other,default_permissions,fsname=memlend,subtype=memlend"};
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  impl->se = fuse_session_new(&args, &ops, sizeof ops, impl.get());
  // The session may have copied our arguments into storage of its own.
  fuse_opt_free_args(&args);
  if (!impl->se) return Error{"FUSE: cannot create a session (is /dev/fuse there?)", ErrorCode::failed};
  if (fuse_session_mount(impl->se, options.mountpoint.c_str()) != 0) {
    fuse_session_destroy(impl->se);
    impl->se = nullptr;
    return Error{"FUSE: cannot mount " + options.mountpoint, ErrorCode::unavailable};
  }
  impl->loop = std::thread([raw = impl] {
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, raw->opt.max_threads);
    fuse_loop_cfg_set_idle_threads(cfg, std::max(1u, raw->opt.max_threads / 2));
    fuse_session_loop_mt(raw->se, cfg);
    fuse_loop_cfg_destroy(cfg);
    {
      std::lock_guard<std::mutex> lock(raw->done_mu);
      raw->loop_done = true;
    }
    raw->done_cv.notify_all();
  });
  // Only once requests are served: the stat is one of them.
  struct stat st {};
  if (::stat(options.mountpoint.c_str(), &st) == 0) {
    impl->dev = st.st_dev;
    // A fault on a mapping reads around itself by the mount's read-ahead,
    // which FUSE starts at the kernel's default of 128 KiB (max_readahead in
    // INIT can only lower it): a VMM streaming through guest memory paid a
    // round trip per 128 KiB. One transfer's worth instead, in paired runs of
    // bench_memfile on a loaded 2-vCPU VM: sequential read 185 -> 532 MiB/s,
    // 0.33x -> 0.85x the userfaultfd region's; rewrite 0.33x -> 0.50x. The
    // price is the region's with 1 MiB blocks: a fault outside a stream reads
    // 1 MiB around itself, not 128 KiB (~1.4 ms there instead of ~0.4 ms),
    // unless the VMM says MADV_RANDOM.
    if (!set_bdi(st.st_dev, "read_ahead_kb", std::to_string(max_transfer >> 10)))
      impl->log("read-ahead left at the kernel's default (128 KiB): cannot set it for " + options.mountpoint);
    // FUSE holds each mount to 1% of the host's dirty-page limit, strictly
    // (throttling writers even while the host is far below its own), so that
    // an untrusted server cannot hold the host's writes hostage. Here the
    // server is memlend and the dirty pages are a guest's memory: the VMM's
    // vCPUs were paused once ~45 MB of it were dirty (on a 24 GiB host),
    // paced by the kernel's guess at our write-back speed. Held to the host's
    // limits (and the VM cgroup's) like a disk's, in paired bench_memfile
    // runs on a loaded 2-vCPU VM: sequential write 197 -> 231 MiB/s (0.51x ->
    // 0.61x the userfaultfd region's), rewrite 201 -> 251 (0.38x -> 0.50x).
    if (!set_bdi(st.st_dev, "strict_limit", "0") || !set_bdi(st.st_dev, "max_ratio", "100"))
      impl->log("dirty pages held to FUSE's 1% of the host's limit: cannot lift it for " + options.mountpoint);
  }
  return std::unique_ptr<MemoryFs>(new MemoryFs(std::move(impl)));
}

Status MemoryFs::add_file(const std::string& name, std::shared_ptr<rdma::MemoryFile> file) {
  auto& r = *impl_;
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos || name.size() > 255)
    return Error{"\"" + name + "\" is not a file name", ErrorCode::invalid_input};
  std::unique_lock<std::shared_mutex> lock(r.mu);
  if (r.by_name.count(name)) return Error{name + " exists already", ErrorCode::invalid_input};
  auto e = std::make_shared<Entry>(Entry{r.next_ino++, name, std::move(file)});
  r.by_name[name] = e;
  r.by_ino[e->ino] = e;
  return ok();
}

Status MemoryFs::remove_file(const std::string& name) {
  auto& r = *impl_;
  std::shared_ptr<Entry> e;
  {
    std::unique_lock<std::shared_mutex> lock(r.mu);
    auto it = r.by_name.find(name);
    if (it == r.by_name.end()) return Error{name + " is not served", ErrorCode::invalid_input};
    e = it->second;
    r.by_name.erase(it);
    r.by_ino.erase(e->ino);
  }
  // The kernel may hold the name for attr_timeout: forget it now.
  if (r.se) (void)fuse_lowlevel_notify_inval_entry(r.se, root_ino, name.c_str(), name.size());
  return ok();
}

std::string MemoryFs::path_of(const std::string& name) const { return impl_->opt.mountpoint + "/" + name; }

void MemoryFs::stop() {
  auto& r = *impl_;
  if (r.stopped || !r.se) return;
  r.stopped = true;
  fuse_session_exit(r.se);
  // Lazily: a VMM that still maps a file keeps the file system alive past
  // the unmount, and then only aborting the connection ends the requests.
  fuse_session_unmount(r.se);
  std::unique_lock<std::mutex> lock(r.done_mu);
  if (!r.done_cv.wait_for(lock, std::chrono::seconds(2), [&] { return r.loop_done.load(); })) {
    if (r.counts.open > 0) r.log("a memory file is still open: its users get errors from now on");
    // fusectl names a connection by the kernel's device number.
    unsigned kdev = (major(r.dev) << 20) | minor(r.dev);
    std::ofstream abort("/sys/fs/fuse/connections/" + std::to_string(kdev) + "/abort");
    if (abort) abort << "1" << std::flush;
    if (!r.done_cv.wait_for(lock, std::chrono::seconds(5), [&] { return r.loop_done.load(); })) {
      // Nothing more can be done from here; the process's exit closes the
      // device, which ends the connection for good.
      r.log("the FUSE connection did not end; its threads are left to the process's exit");
      lock.unlock();
      r.loop.detach();
      return;
    }
  }
  lock.unlock();
  if (r.loop.joinable()) r.loop.join();
  fuse_session_destroy(r.se);
  r.se = nullptr;
}

FsStats MemoryFs::stats() const {
  auto& c = impl_->counts;
  return FsStats{c.reads, c.writes, c.punches, c.truncates, c.syncs, c.errors, c.open};
}

}  // namespace memlend::memfs
