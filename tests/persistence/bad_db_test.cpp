// Databases that are not what the store expects, and disks that fail it:
// each gets one clear line naming the file and what to do, no crash, and the
// file is never made worse.
#define BOOST_TEST_MODULE persistence_bad_db
#include <boost/test/unit_test.hpp>

#include "persistence/schema.hpp"
#include "persistence/store.hpp"
#include "tests/persistence/support.hpp"

#include <csignal>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <mutex>

using namespace memlend::store;
using memlend::test::file_exists;
using memlend::test::read_file;
using memlend::test::TempDir;
using memlend::test::Tmpfs;

namespace {

// The store's log (SQLite's own included), kept for the tests to read.
struct CapturedLog {
  CapturedLog() {
    set_log_sink([this](LogLevel, const std::string& m) {
      std::lock_guard<std::mutex> g(mutex);
      lines.push_back(m);
    });
  }
  ~CapturedLog() { set_log_sink({}); }
  std::string all() {
    std::lock_guard<std::mutex> g(mutex);
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }
  std::mutex mutex;
  std::vector<std::string> lines;
};
BOOST_GLOBAL_FIXTURE(CapturedLog);

boost::test_tools::assertion_result may_mount(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r(memlend::test::can_mount());
  r.message() << "needs to mount a tmpfs (root or CAP_SYS_ADMIN)";
  return r;
}

boost::test_tools::assertion_result not_root(boost::unit_test::test_unit_id) {
  boost::test_tools::assertion_result r(::geteuid() != 0);
  r.message() << "root may write a file whatever its mode";
  return r;
}

// Opens `path`, expects a refusal, and returns its message.
std::string refusal(const std::string& path, Access access = Access::read_write) {
  Options o;
  o.access = access;
  auto s = Store::open(path, o);
  BOOST_TEST_REQUIRE(!s, "opening " << path << " should have been refused");
  const std::string& m = s.error().message;
  BOOST_TEST(m.find(path) == 0u, "the message names the file first: " << m);
  BOOST_TEST(m.find('\n') == std::string::npos, "one line: " << m);
  return m;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The file is byte for byte as it was, and nothing was added beside it.
void unchanged(const std::string& path, const std::string& before) {
  BOOST_TEST((read_file(path) == before), path << " was changed");
  BOOST_TEST(!file_exists(path + "-wal"));
  BOOST_TEST(!file_exists(path + "-shm"));
}

std::uint32_t page_size(const std::string& path) {
  return static_cast<std::uint32_t>(std::stoul(memlend::test::raw_value(path, "PRAGMA page_size")));
}

// A child process that opens the store and keeps it open until told to go.
struct Holder {
  pid_t pid = -1;
  int go = -1;

  explicit Holder(const std::string& path) {
    int up[2], down[2];
    BOOST_TEST_REQUIRE(::pipe(up) == 0);
    BOOST_TEST_REQUIRE(::pipe(down) == 0);
    pid = ::fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(up[0]);
      ::close(down[1]);
      {
        auto s = Store::open(path);
        char c = s ? 'y' : 'n';
        if (::write(up[1], &c, 1) != 1) ::_exit(3);
        while (::read(down[0], &c, 1) > 0) {
        }
      }
      ::_exit(0);
    }
    ::close(up[1]);
    ::close(down[0]);
    go = down[1];
    char c = 0;
    BOOST_TEST_REQUIRE(::read(up[0], &c, 1) == 1);
    ::close(up[0]);
    BOOST_TEST_REQUIRE(c == 'y');
  }
  int stop(int sig = 0) {
    if (sig) ::kill(pid, sig);
    ::close(go);
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    return status;
  }
  ~Holder() {
    if (pid > 0) stop(SIGKILL);
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(a_file_that_is_not_sqlite_is_refused_and_left_alone) {
  TempDir dir("bad");
  std::string path = dir.file("memlend.db");
  memlend::test::write_file(path, "hosts: A, B\nthis is somebody's notes, not a database\n");
  std::string before = read_file(path);
  BOOST_TEST(contains(refusal(path), "not an SQLite database"));
  BOOST_TEST(contains(refusal(path, Access::read_only), "not an SQLite database"));
  unchanged(path, before);
}

BOOST_AUTO_TEST_CASE(another_programs_database_is_refused_and_left_alone) {
  TempDir dir("bad");
  std::string other = dir.file("other.db");
  memlend::test::raw_sql(other, "PRAGMA application_id = 42; CREATE TABLE t (x); INSERT INTO t VALUES (1);");
  std::string plain = dir.file("plain.db");
  memlend::test::raw_sql(plain, "CREATE TABLE leases (id INTEGER PRIMARY KEY);");
  std::string before_other = read_file(other), before_plain = read_file(plain);
  BOOST_TEST(contains(refusal(other), "another program (application_id 0x0000002a)"));
  BOOST_TEST(contains(refusal(plain), "not memlend's"));
  unchanged(other, before_other);
  unchanged(plain, before_plain);
}

BOOST_AUTO_TEST_CASE(a_newer_schema_is_refused_and_never_overwritten) {
  TempDir dir("bad");
  std::string path = dir.file("memlend.db");
  memlend::test::write_sample_v1(path);
  memlend::test::raw_sql(path, "PRAGMA user_version = 7");
  std::string before = read_file(path);
  std::string m = refusal(path);
  BOOST_TEST(contains(m, "newer memlend (schema version 7; this memlend knows versions up to " +
                            std::to_string(builtin_migrations().back().to_version) + ")"),
             m);
  BOOST_TEST(contains(m, "left as it is"));
  refusal(path, Access::read_only);
  unchanged(path, before);
}

// memlend's header with nothing behind it (a file another tool stamped, or a
// schema dropped by hand): refused before anything is written, WAL mode included.
BOOST_AUTO_TEST_CASE(memlends_application_id_without_its_tables_is_refused_and_left_alone) {
  TempDir dir("bad");
  std::string path = dir.file("memlend.db");
  memlend::test::raw_sql(path, "PRAGMA application_id = 1835822692; PRAGMA user_version = 1;");
  std::string before = read_file(path);
  std::string m = refusal(path);
  BOOST_TEST(contains(m, "none of memlend's tables"), m);
  BOOST_TEST(contains(m, "left as it is"), m);
  BOOST_TEST(contains(refusal(path, Access::read_only), "none of memlend's tables"));
  unchanged(path, before);

  // Some of its tables but not all: the statements that need the others are
  // prepared before the switch to WAL, so this file too stays as it was.
  std::string partial = dir.file("partial.db");
  memlend::test::raw_sql(partial, "PRAGMA application_id = 1835822692; PRAGMA user_version = 1; "
                                  "CREATE TABLE schema_history (version INTEGER, summary TEXT, applied_unix_ms INTEGER);");
  before = read_file(partial);
  BOOST_TEST(contains(refusal(partial), "no such table"));
  unchanged(partial, before);
}

BOOST_AUTO_TEST_CASE(a_damaged_page_is_found_at_start_and_the_file_left_alone) {
  TempDir dir("bad");
  std::string path = dir.file("memlend.db");
  memlend::test::write_sample_v1(path);
  auto root = std::stoul(memlend::test::raw_value(path, "SELECT rootpage FROM sqlite_schema WHERE name = 'leases'"));
  std::string bytes = read_file(path);
  // The b-tree page header of the leases table: an impossible page type.
  std::size_t at = (root - 1) * page_size(path);
  BOOST_TEST_REQUIRE(at + 8 <= bytes.size());
  for (std::size_t i = 0; i < 8; ++i) bytes[at + i] = static_cast<char>(0xff);
  memlend::test::write_file(path, bytes);
  std::string m = refusal(path);
  BOOST_TEST(contains(m, "damaged"), m);
  BOOST_TEST(contains(m, "restore it from a backup"), m);
  BOOST_TEST(contains(refusal(path, Access::read_only), "damaged"));
  unchanged(path, bytes);
}

BOOST_AUTO_TEST_CASE(a_truncated_database_is_refused_and_left_alone) {
  TempDir dir("bad");
  std::string path = dir.file("memlend.db");
  memlend::test::write_sample_v1(path);
  std::string whole = read_file(path);
  BOOST_TEST_REQUIRE(whole.size() >= 4 * page_size(path));
  std::string half = whole.substr(0, whole.size() / 2);
  memlend::test::write_file(path, half);
  BOOST_TEST(contains(refusal(path), "damaged"));
  unchanged(path, half);

  // Cut inside the header: SQLite cannot even read its first page.
  std::string stub = whole.substr(0, 60);
  memlend::test::write_file(path, stub);
  std::string m = refusal(path);
  BOOST_TEST((contains(m, "damaged") || contains(m, "not an SQLite database")), m);
  unchanged(path, stub);
}

BOOST_AUTO_TEST_CASE(a_path_that_is_not_a_database_file_is_refused) {
  TempDir dir("bad");
  BOOST_TEST(contains(refusal(dir.path), "not a regular file"));
  std::string missing = dir.file("missing.db");
  BOOST_TEST(contains(refusal(missing, Access::read_only), "no such database"));
  BOOST_TEST(!file_exists(missing));
  BOOST_TEST(contains(refusal(dir.file("no/such/dir/memlend.db")), "cannot write its directory"));
}

BOOST_AUTO_TEST_CASE(an_empty_file_becomes_a_new_database_but_is_not_shown_as_one) {
  TempDir dir("bad");
  std::string path = dir.file("memlend.db");
  memlend::test::write_file(path, "");
  BOOST_TEST(contains(refusal(path, Access::read_only), "memlend has written nothing"));
  auto s = Store::open(path);
  BOOST_TEST_REQUIRE(bool(s));
  BOOST_TEST((*s)->schema_version() == builtin_migrations().back().to_version);
}

BOOST_AUTO_TEST_CASE(a_second_controller_is_kept_off_the_database, *boost::unit_test::timeout(60)) {
  TempDir dir("bad");
  std::string path = dir.file("memlend.db");
  memlend::test::write_sample_v1(path);
  Holder first(path);
  std::string m = refusal(path);
  BOOST_TEST(contains(m, "in use by another memlend process (pid " + std::to_string(first.pid) + ")"), m);
  // Support tooling reads while the controller runs.
  Options ro;
  ro.access = Access::read_only;
  auto reader = Store::open(path, ro);
  BOOST_TEST_REQUIRE(bool(reader), (reader ? "" : reader.error().message));
  BOOST_TEST((*reader)->load()->hosts.size() == 3u);
  BOOST_TEST(first.stop() == 0);
  BOOST_TEST(bool(Store::open(path)));
}

BOOST_AUTO_TEST_CASE(the_lock_goes_with_a_controller_killed_by_sigkill, *boost::unit_test::timeout(60)) {
  TempDir dir("bad");
  std::string path = dir.file("memlend.db");
  memlend::test::write_sample_v1(path);
  Holder first(path);
  refusal(path);
  int status = first.stop(SIGKILL);
  BOOST_TEST((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL));
  auto s = Store::open(path);
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  BOOST_TEST((*s)->load()->leases.size() == 2u);
}

BOOST_AUTO_TEST_CASE(a_killed_writer_loses_nothing_it_acknowledged, *boost::unit_test::timeout(120)) {
  TempDir dir("bad");
  std::string path = dir.file("memlend.db");
  int up[2];
  BOOST_TEST_REQUIRE(::pipe(up) == 0);
  pid_t pid = ::fork();
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(up[0]);
    auto s = Store::open(path);
    if (!s) ::_exit(3);
    // Acknowledges each batch only once it is durable, as an actor would act.
    for (std::int64_t i = 1;; ++i) {
      EventRecord e;
      e.t_s = static_cast<double>(i);
      e.event = "need_detected";
      e.mib = i;
      auto o = (*s)->commit(std::move(Batch(static_cast<double>(i)).event(e)));
      if (!o.ok() || ::write(up[1], &i, sizeof i) != sizeof i) ::_exit(4);
    }
  }
  ::close(up[1]);
  std::int64_t acked = 0, n = 0;
  while (acked < 300 && ::read(up[0], &n, sizeof n) == sizeof n) acked = n;
  ::kill(pid, SIGKILL);
  while (::read(up[0], &n, sizeof n) == sizeof n) acked = n;
  ::close(up[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  BOOST_TEST_REQUIRE(acked >= 300);

  auto s = Store::open(path);
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  auto snap = (*s)->load();
  BOOST_TEST_REQUIRE(bool(snap));
  BOOST_TEST(snap->last_event_seq >= static_cast<std::uint64_t>(acked));
  auto events = (*s)->events();
  BOOST_TEST_REQUIRE(bool(events));
  for (std::size_t i = 0; i < events->size(); ++i) {
    BOOST_TEST_REQUIRE((*events)[i].seq == i + 1);
    BOOST_TEST_REQUIRE((*events)[i].mib.value_or(-1) == static_cast<std::int64_t>(i + 1));
  }
}

BOOST_AUTO_TEST_CASE(a_read_only_file_is_refused_for_writing, *boost::unit_test::precondition(not_root)) {
  TempDir dir("bad");
  std::string path = dir.file("memlend.db");
  memlend::test::write_sample_v1(path);
  BOOST_TEST_REQUIRE(::chmod(path.c_str(), 0400) == 0);
  std::string before = read_file(path);
  BOOST_TEST(contains(refusal(path), "cannot write the database"));
  unchanged(path, before);
}

BOOST_AUTO_TEST_CASE(a_read_only_filesystem_is_refused_for_writing_but_readable,
                     *boost::unit_test::precondition(may_mount)) {
  Tmpfs fs("rofs", 1024);
  BOOST_TEST_REQUIRE(fs.mounted());
  std::string path = fs.file("memlend.db");
  memlend::test::write_sample_v1(path);
  std::string before = read_file(path);
  BOOST_TEST_REQUIRE(fs.remount_read_only());
  std::string m = refusal(path);
  BOOST_TEST(contains(m, "cannot write the database (Read-only file system)"), m);
  {
    Options ro;
    ro.access = Access::read_only;
    auto reader = Store::open(path, ro);
    BOOST_TEST_REQUIRE(bool(reader), (reader ? "" : reader.error().message));
    BOOST_TEST((*reader)->load()->leases.size() == 2u);
  }
  unchanged(path, before);
}

BOOST_AUTO_TEST_CASE(a_full_disk_fails_the_batch_keeps_what_was_durable_and_passes,
                     *boost::unit_test::precondition(may_mount)) {
  Tmpfs fs("full", 1024);
  BOOST_TEST_REQUIRE(fs.mounted());
  std::string path = fs.file("memlend.db");
  std::int64_t durable = 0;
  Outcome failed;
  {
    auto s = Store::open(path);
    BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
    for (auto& b : memlend::test::sample_v1()) BOOST_TEST_REQUIRE((*s)->commit(std::move(b)).ok());
    std::string filler = fs.fill();
    // Each batch needs new pages; the disk has none left.
    for (int i = 0; i < 10000; ++i) {
      RecommendationRecord r;
      r.vm = 0;
      r.target = 1;
      r.reason = std::string(32 * 1024, static_cast<char>('a' + i % 26));
      EventRecord e;
      e.t_s = 1000 + i;
      e.event = "migration_recommended";
      e.vm = "VM1";
      Outcome o = (*s)->commit(std::move(Batch(1000 + i).put(r).event(e)));
      if (!o.ok()) {
        failed = o;
        break;
      }
      ++durable;
    }
    BOOST_TEST_REQUIRE((failed.status == Status::failed), failed.status);
    BOOST_TEST(failed.error.find(path) == 0u, failed.error);
    BOOST_TEST(contains(failed.error, "the disk is full"), failed.error);
    BOOST_TEST(contains(failed.error, "nothing of this change was recorded"), failed.error);
    BOOST_TEST(failed.event_seqs.empty());
    // Space comes back: the store goes on.
    BOOST_TEST_REQUIRE(::unlink(filler.c_str()) == 0);
    EventRecord e;
    e.t_s = 5000;
    e.event = "unsatisfied";
    BOOST_TEST((*s)->commit(std::move(Batch(5000).event(e))).ok());
  }
  auto s = Store::open(path);
  BOOST_TEST_REQUIRE(bool(s), (s ? "" : s.error().message));
  auto snap = (*s)->load();
  BOOST_TEST_REQUIRE(bool(snap));
  BOOST_TEST(snap->last_event_seq == 7u + static_cast<std::uint64_t>(durable) + 1);
  BOOST_TEST(snap->clock_s == 5000.0);
}

BOOST_AUTO_TEST_CASE(a_full_disk_at_creation_leaves_no_file_behind, *boost::unit_test::precondition(may_mount)) {
  Tmpfs fs("full-new", 256);
  BOOST_TEST_REQUIRE(fs.mounted());
  fs.fill();
  std::string path = fs.file("memlend.db");
  std::string m = refusal(path);
  BOOST_TEST((contains(m, "disk is full") || contains(m, "No space left")), m);
  BOOST_TEST(!file_exists(path));
  BOOST_TEST(!file_exists(path + "-wal"));
  BOOST_TEST(!file_exists(path + "-shm"));
}

BOOST_AUTO_TEST_CASE(sqlites_own_log_reaches_the_programs_log) {
  TempDir dir("bad");
  std::string path = dir.file("memlend.db");
  memlend::test::write_sample_v1(path);
  std::string bytes = read_file(path);
  auto root = std::stoul(memlend::test::raw_value(path, "SELECT rootpage FROM sqlite_schema WHERE name = 'events'"));
  std::size_t at = (root - 1) * page_size(path);
  for (std::size_t i = 0; i < 8; ++i) bytes[at + i] = static_cast<char>(0xff);
  memlend::test::write_file(path, bytes);
  CapturedLog log;
  refusal(path);
  BOOST_TEST(contains(log.all(), "sqlite: "), log.all());
}
