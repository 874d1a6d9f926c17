// `memlend mount` as an operator runs it, against a `memlend donor` child:
// the file served and used, the counters on exit, the memory given back,
// and every way of asking wrongly refused with exit 2 and one line.
#define BOOST_TEST_MODULE memfs_mount_cli
#include <boost/test/unit_test.hpp>

#include "tests/rdma/fixture.hpp"
#include "tests/support/child.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

using namespace memlend;
using std::chrono::seconds;

namespace {

const std::string binary = MEMLEND_BINARY;

boost::test_tools::assertion_result fuse_here(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r(true);
  if (::geteuid() != 0 || ::access("/dev/fuse", R_OK | W_OK) != 0) {
    r = false;
    r.message() << "skipped: needs root and /dev/fuse";
  }
  return r;
}

std::vector<std::string> mount_argv(const test::DonorProcess& d, const std::string& dir, int mib,
                                    std::vector<std::string> more = {}) {
  std::vector<std::string> argv{binary, "mount", "--donor", d.address, "--mib", std::to_string(mib),
                                "--mountpoint", dir, "--secret-file", d.secret_file};
  argv.insert(argv.end(), more.begin(), more.end());
  return argv;
}

}  // namespace

BOOST_AUTO_TEST_CASE(serves_the_file_until_sigterm_then_prints_its_counters_and_gives_the_lease_back,
                     *boost::unit_test::precondition(fuse_here)) {
  test::TempDir dir("mount-cli");
  test::DonorProcess donor(dir, "donor", 64);
  std::string mnt = dir.path() + "/mnt";
  ::mkdir(mnt.c_str(), 0755);
  test::Child m(mount_argv(donor, mnt, 32, {"--mirror-dir", dir.path(), "--json"}), dir.path() + "/mount");
  BOOST_TEST_REQUIRE(!m.wait_stderr("serving ", seconds(20)).empty(), m.err());

  int fd = ::open((mnt + "/memory").c_str(), O_RDWR);
  BOOST_TEST_REQUIRE(fd >= 0);
  std::vector<std::uint8_t> buf(8 << 20);
  test::fill(buf.data(), buf.size(), 5);
  BOOST_TEST_REQUIRE(::pwrite(fd, buf.data(), buf.size(), 4 << 20) == static_cast<ssize_t>(buf.size()));
  BOOST_TEST_REQUIRE(::fsync(fd) == 0);
  BOOST_TEST(donor.stats().resident_bytes >= buf.size());
  BOOST_TEST_REQUIRE(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4 << 20, 4 << 20) == 0);
  BOOST_TEST_REQUIRE(::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0);
  std::vector<std::uint8_t> got(4 << 20);
  BOOST_TEST_REQUIRE(::pread(fd, got.data(), got.size(), 8 << 20) == static_cast<ssize_t>(got.size()));
  BOOST_TEST(std::memcmp(got.data(), buf.data() + (4 << 20), got.size()) == 0);
  ::close(fd);

  BOOST_TEST(m.stop() == 0);
  auto j = test::last_json_line(m.out());
  BOOST_TEST(j["bytes_written_back"].get<std::uint64_t>() == buf.size());
  BOOST_TEST(j["mirror_bytes_written"].get<std::uint64_t>() == buf.size());
  BOOST_TEST(j["bytes_punched"].get<std::uint64_t>() == (4u << 20));
  BOOST_TEST(j["bytes_fetched"].get<std::uint64_t>() >= got.size());
  BOOST_TEST(j["failovers"].get<std::uint64_t>() == 0u);
  // Unmounted, the lease released (its memory back in the pool), the mirror gone.
  struct stat a {}, b {};
  BOOST_TEST_REQUIRE(::stat(mnt.c_str(), &a) == 0);
  BOOST_TEST_REQUIRE(::stat(dir.path().c_str(), &b) == 0);
  BOOST_TEST(a.st_dev == b.st_dev);
  BOOST_TEST(donor.stats().granted_bytes == 0u);
  BOOST_TEST(donor.stats().resident_bytes == 0u);
  for (auto& e : std::filesystem::directory_iterator(dir.path())) BOOST_TEST(e.path().extension() != ".mirror");
}

BOOST_AUTO_TEST_CASE(bad_flags_a_busy_mountpoint_and_a_refusing_donor_exit_2_with_one_line,
                     *boost::unit_test::precondition(fuse_here)) {
  test::TempDir dir("mount-cli");
  test::DonorProcess donor(dir, "donor", 64);
  std::string mnt = dir.path() + "/mnt";
  ::mkdir(mnt.c_str(), 0755);
  std::ofstream(dir.path() + "/wrong.secret") << "not the pool secret\n";
  ::chmod((dir.path() + "/wrong.secret").c_str(), 0600);
  const std::vector<std::vector<std::string>> bad = {
      {binary, "mount", "--donor", donor.address, "--mib", "8"},
      {binary, "mount", "--donor", "nowhere", "--mib", "8", "--mountpoint", mnt},
      {binary, "mount", "--donor", donor.address, "--mib", "0", "--mountpoint", mnt},
      {binary, "mount", "--donor", donor.address, "--mib", "3", "--mountpoint", mnt},  // not whole 2 MiB blocks
      {binary, "mount", "--donor", donor.address, "--mib", "8", "--mountpoint", mnt, "--block-kib", "6"},
      {binary, "mount", "--donor", donor.address, "--mib", "8", "--mountpoint", mnt, "--transport", "pigeon"},
      {binary, "mount", "--donor", donor.address, "--mib", "8", "--mountpoint", dir.path() + "/missing"},
      {binary, "mount", "--donor", donor.address, "--mib", "8", "--mountpoint", dir.path() + "/wrong.secret"},
      {binary, "mount", "--donor", donor.address, "--mib", "8", "--mountpoint", mnt, "--owner", "no-such-user"},
      {binary, "mount", "--donor", donor.address, "--mib", "8", "--mountpoint", mnt, "--secret-file", dir.path() + "/wrong.secret"},
      mount_argv(donor, mnt, 1024),  // more than the pool holds
  };
  for (auto& argv : bad) {
    auto r = test::run_process(argv, 30);
    BOOST_TEST(r.status == 2, argv[4] << " " << argv[5] << ": " << r.err);
    BOOST_TEST(std::count(r.err.begin(), r.err.end(), '\n') == 1, r.err);
  }
  // Nothing was left mounted, and the donor lent nothing.
  struct stat a {}, b {};
  BOOST_TEST_REQUIRE(::stat(mnt.c_str(), &a) == 0);
  BOOST_TEST_REQUIRE(::stat(dir.path().c_str(), &b) == 0);
  BOOST_TEST(a.st_dev == b.st_dev);
  BOOST_TEST(donor.stats().granted_bytes == 0u);

  // A mountpoint with a mount on it already.
  test::Child first(mount_argv(donor, mnt, 8), dir.path() + "/first");
  BOOST_TEST_REQUIRE(!first.wait_stderr("serving ", seconds(20)).empty(), first.err());
  auto r = test::run_process(mount_argv(donor, mnt, 8), 30);
  BOOST_TEST(r.status == 2);
  BOOST_TEST(r.err.find("busy") != std::string::npos, r.err);
  BOOST_TEST(first.stop() == 0);
}
