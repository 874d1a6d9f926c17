// The FUSE memory file system, mounted for real (root and /dev/fuse), used
// the way a VMM uses it: a shared mapping written and read back through the
// page cache, pages written back and fetched again, fallocate(PUNCH_HOLE),
// truncate, who may open a file, and a mount that ends while still mapped.
#define BOOST_TEST_MODULE memfs_memory_fs
#include <boost/test/unit_test.hpp>

#include "memfs/memory_fs.hpp"
#include "tests/rdma/fixture.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

using namespace memlend;

namespace {

constexpr std::uint64_t block = 2 << 20;
constexpr std::uint64_t bytes = 16 * block;

// A test skipped says why (ctest's output shows it at log level message).
boost::test_tools::assertion_result fuse_here(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r(true);
  if (::geteuid() != 0) {
    r = false;
    r.message() << "skipped: needs root (a FUSE mount with allow_other)";
  } else if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    r = false;
    r.message() << "skipped: needs /dev/fuse";
  }
  return r;
}

struct Mounted {
  test::TempDir dir{"memfs"};
  test::LocalDonor donor{64 << 20};
  std::shared_ptr<rdma::MemoryFile> file;
  std::unique_ptr<memfs::MemoryFs> fs;
  std::string path;

  Mounted() {
    rdma::MemoryFileConfig cfg;
    cfg.bytes = bytes;
    cfg.block_bytes = block;
    cfg.transport = rdma::TransportKind::tcp;
    auto f = rdma::MemoryFile::create(cfg);
    BOOST_TEST_REQUIRE(bool(f));
    file = std::move(*f);
    BOOST_TEST_REQUIRE(bool(file->add_lease(1, donor.lease(bytes))));
    memfs::MountOptions o;
    o.mountpoint = dir.path();
    auto m = memfs::MemoryFs::mount(o);
    BOOST_TEST_REQUIRE(bool(m), (m ? "" : m.error().message));
    fs = std::move(*m);
    BOOST_TEST_REQUIRE(bool(fs->add_file("memory", file)));
    path = fs->path_of("memory");
  }
  ~Mounted() {
    if (fs) fs->stop();
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_shared_mapping_goes_to_the_donor_and_comes_back_intact, *boost::unit_test::precondition(fuse_here)) {
  Mounted m;
  struct stat st {};
  BOOST_TEST_REQUIRE(::stat(m.path.c_str(), &st) == 0);
  BOOST_TEST(st.st_size == static_cast<off_t>(bytes));
  BOOST_TEST((st.st_mode & 0777) == 0600u);

  int fd = ::open(m.path.c_str(), O_RDWR);
  BOOST_TEST_REQUIRE(fd >= 0);
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  BOOST_TEST_REQUIRE(p != MAP_FAILED);
  test::fill(p, bytes, 1);
  BOOST_TEST_REQUIRE(::msync(p, bytes, MS_SYNC) == 0);
  BOOST_TEST_REQUIRE(::munmap(p, bytes) == 0);
  BOOST_TEST(m.file->stats().bytes_written_back >= bytes);

  // Out of the page cache (they are clean now), so that reading them again
  // fetches them from the donor.
  BOOST_TEST_REQUIRE(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
  auto fetched = m.file->stats().bytes_fetched;
  p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  BOOST_TEST_REQUIRE(p != MAP_FAILED);
  BOOST_TEST(test::check(p, bytes, 1) == 0u);
  BOOST_TEST(m.file->stats().bytes_fetched - fetched >= bytes / 2);
  ::munmap(p, bytes);
  ::close(fd);
}

BOOST_AUTO_TEST_CASE(fallocate_punches_holes_that_read_as_zeros_and_free_the_donors_memory, *boost::unit_test::precondition(fuse_here)) {
  Mounted m;
  int fd = ::open(m.path.c_str(), O_RDWR);
  BOOST_TEST_REQUIRE(fd >= 0);
  std::vector<std::uint8_t> buf(bytes);
  test::fill(buf.data(), bytes, 2);
  BOOST_TEST_REQUIRE(::pwrite(fd, buf.data(), bytes, 0) == static_cast<ssize_t>(bytes));
  BOOST_TEST_REQUIRE(::fsync(fd) == 0);
  auto resident = m.donor.pool->stats().resident_bytes;

  // What QEMU does when a virtio-mem device is realised, and on unplug.
  BOOST_TEST_REQUIRE(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4 * block, 8 * block) == 0);
  std::vector<std::uint8_t> got(8 * block, 0xAA);
  BOOST_TEST_REQUIRE(::pread(fd, got.data(), got.size(), 4 * block) == static_cast<ssize_t>(got.size()));
  BOOST_TEST(std::all_of(got.begin(), got.end(), [](std::uint8_t b) { return b == 0; }));
  BOOST_TEST(m.donor.pool->stats().resident_bytes <= resident - 8 * block);
  BOOST_TEST(m.file->stats().bytes_punched == 8 * block);
  BOOST_TEST_REQUIRE(::pread(fd, got.data(), 4 * block, 0) == static_cast<ssize_t>(4 * block));
  BOOST_TEST(test::check(got.data(), 4 * block, 2) == 0u);

  // Preallocation inside the file is a no-op, beyond it no space; the other
  // modes are not for memory.
  BOOST_TEST(::fallocate(fd, 0, 0, bytes) == 0);
  BOOST_TEST(::fallocate(fd, 0, 0, bytes + block) == -1);
  BOOST_TEST(errno == ENOSPC);
  BOOST_TEST(::fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, block) == -1);
  ::close(fd);
}

BOOST_AUTO_TEST_CASE(truncate_works_within_the_lent_size_and_nobody_else_may_open_or_create, *boost::unit_test::precondition(fuse_here)) {
  Mounted m;
  BOOST_TEST(::truncate(m.path.c_str(), bytes / 2) == 0);
  struct stat st {};
  BOOST_TEST_REQUIRE(::stat(m.path.c_str(), &st) == 0);
  BOOST_TEST(st.st_size == static_cast<off_t>(bytes / 2));
  BOOST_TEST(::truncate(m.path.c_str(), bytes) == 0);
  BOOST_TEST(::truncate(m.path.c_str(), bytes + 1) == -1);
  BOOST_TEST(errno == EFBIG);

  BOOST_TEST(::open((m.dir.path() + "/other").c_str(), O_RDWR | O_CREAT, 0600) == -1);
  BOOST_TEST(::chmod(m.path.c_str(), 0666) == -1);
  BOOST_TEST(::unlink(m.path.c_str()) == -1);

  // Another user, even with the directory open to all, is refused by the
  // file's mode: a VM's memory is its own.
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(3);
    // The mount's root is open to all: the file's mode is what refuses.
    if (::open(m.dir.path().c_str(), O_RDONLY | O_DIRECTORY) < 0) ::_exit(2);
    ::_exit(::open(m.path.c_str(), O_RDONLY) == -1 && errno == EACCES ? 0 : 1);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  BOOST_TEST(WIFEXITED(status));
  BOOST_TEST(WEXITSTATUS(status) == 0);

  // A second mount over the first is refused before anything is mounted.
  BOOST_TEST(!memfs::check_mountpoint(m.dir.path()));
}

BOOST_AUTO_TEST_CASE(a_mount_still_mapped_stops_within_bounds_and_its_user_gets_errors, *boost::unit_test::precondition(fuse_here)) {
  Mounted m;
  int fd = ::open(m.path.c_str(), O_RDWR);
  BOOST_TEST_REQUIRE(fd >= 0);
  void* p = ::mmap(nullptr, block, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  BOOST_TEST_REQUIRE(p != MAP_FAILED);
  static_cast<volatile std::uint8_t*>(p)[0] = 7;
  // Returns at all: a file still mapped is cut off, not waited for.
  m.fs->stop();
  std::uint8_t b;
  BOOST_TEST(::pread(fd, &b, 1, 3 * block) == -1);
  ::munmap(p, block);
  ::close(fd);
}
