#define BOOST_TEST_MODULE replica_disk
#include <boost/test/unit_test.hpp>

// A member whose disk fills up: the cluster goes on committing on the
// quorum the other two make, and once the disk has room again the member,
// restarted, catches up and carries the quorum when another member dies.

#include "tests/replica/cluster.hpp"

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

using namespace memlend::test::replica_cluster;

namespace {

// Raft preallocates its log in 8 MiB segments: the first fits, the second
// does not.
constexpr const char* small = "size=12m";

struct SmallDisk {
  std::string path;
  bool mounted = false;
  ~SmallDisk() {
    if (mounted) ::umount2(path.c_str(), MNT_DETACH);
  }
};

// Commits `sql` through whichever of `members` leads, asking again after a
// failure until election_bound has passed; the last error, or "".
std::string write_within(const std::vector<std::string>& members, const std::string& sql) {
  std::string error = "no leader within the bound";
  auto end = std::chrono::steady_clock::now() + election_bound;
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(end - std::chrono::steady_clock::now());
    if (left <= milliseconds(0)) return error;
    auto writer = connect_leader(members, db, left);
    if (!writer) {
      error = writer.error().message;
      continue;
    }
    auto done = writer->exec(sql);
    if (done) return "";
    error = done.error().message;
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_member_with_a_full_disk_stops_nothing) {
  if (::geteuid() != 0) {
    BOOST_TEST_MESSAGE("skipped: mounting a small tmpfs for a member's disk needs root");
    return;
  }
  SmallDisk disk;
  Cluster cluster(3, [&](int id, const std::string& data) {
    if (id != 3) return;
    std::filesystem::create_directories(data);
    disk.path = data;
    disk.mounted = ::mount("tmpfs", data.c_str(), "tmpfs", 0, small) == 0;
    BOOST_TEST_REQUIRE(disk.mounted, "a tmpfs for member 3: " << std::strerror(errno));
  });
  Client leader = must(connect_leader({cluster.address(1)}, db, election_bound), "leader");
  must(leader.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB)"), "create");
  // 40 MiB through the log: member 3's disk is full long before the end.
  const std::string row(64 << 10, 'x');
  for (int i = 0; i < 640; ++i)
    must(leader.exec("INSERT INTO t (data) VALUES (?)", {Value{row}}), "a write while member 3's disk is full");
  // Member 1 holds more than member 3's disk can: member 3's is full.
  std::uintmax_t held = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(cluster.data_dir(1)))
    if (f.is_regular_file()) held += f.file_size();
  BOOST_TEST(held > std::uintmax_t{12} << 20, "member 1 holds " << held << " bytes");

  // Room again; member 3 restarted from what its disk holds catches up.
  BOOST_TEST_REQUIRE(::mount(nullptr, disk.path.c_str(), nullptr, MS_REMOUNT, "size=256m") == 0,
                     std::strerror(errno));
  cluster.kill9(3);
  cluster.start(3);
  must(leader.exec("INSERT INTO t (data) VALUES ('after')"), "a write once member 3 is back");
  // Without member 3 caught up, members 1 and 3 would make no quorum.
  cluster.kill9(2);
  // Member 3 may still be catching up when member 2 dies: the write is
  // tried again until a leader of the two commits it.
  std::string error = write_within({cluster.address(1), cluster.address(3)}, "INSERT INTO t (data) VALUES ('last')");
  BOOST_TEST_REQUIRE(error.empty(), error << "; member 3 said: " << cluster.err(3));
  Client writer = must(connect_leader({cluster.address(1), cluster.address(3)}, db, election_bound), "a leader");
  auto rows = must(writer.query("SELECT count(*) FROM t"), "count");
  BOOST_TEST_REQUIRE(rows.rows.size() == 1u);
}
