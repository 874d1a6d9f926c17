#include "tests/persistence/support.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

namespace memlend::test {

TempDir::TempDir(const std::string& tag) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/memlend-" + tag + "-XXXXXX";
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp: " + std::string(std::strerror(errno)));
  path = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

Tmpfs::Tmpfs(const std::string& tag, std::size_t kib) : dir_(tag) {
  std::string options = "size=" + std::to_string(kib) + "k,mode=0700";
  mounted_ = ::mount("tmpfs", dir_.path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) == 0;
}

Tmpfs::~Tmpfs() {
  if (mounted_ && ::umount2(dir_.path.c_str(), 0) != 0) ::umount2(dir_.path.c_str(), MNT_DETACH);
}

bool Tmpfs::remount_read_only() {
  return ::mount("tmpfs", dir_.path.c_str(), "tmpfs", MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) == 0;
}

std::string Tmpfs::fill() {
  std::string filler = dir_.file("filler");
  int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("filler: " + std::string(std::strerror(errno)));
  std::string block(4096, 'x');
  while (::write(fd, block.data(), block.size()) > 0) {
  }
  while (::write(fd, block.data(), 1) > 0) {
  }
  ::close(fd);
  return filler;
}

bool can_mount() {
  Tmpfs probe("mount-probe", 64);
  return probe.mounted();
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

void raw_sql(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  char* err = nullptr;
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string message = err ? err : (db ? sqlite3_errmsg(db) : "open failed");
  sqlite3_free(err);
  sqlite3_close(db);
  if (rc != SQLITE_OK) throw std::runtime_error(db_path + ": " + message);
}

std::string raw_value(const std::string& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_stmt* stmt = nullptr;
  std::string out;
  // Like the store's readers: a file without a -wal is read without making one.
  std::string uri = "file:" + db_path + (file_exists(db_path + "-wal") ? "?mode=ro" : "?immutable=1");
  int rc = sqlite3_open_v2(uri.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nullptr);
  if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr);
  if (rc == SQLITE_OK && sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0))
    out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  std::string message = db ? sqlite3_errmsg(db) : "open failed";
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  if (rc != SQLITE_OK) throw std::runtime_error(db_path + ": " + message);
  return out;
}

std::vector<store::Batch> sample_v1() {
  using namespace memlend::store;
  std::vector<Batch> out;

  Batch setup(0);
  setup.scenario("sample-v1");
  setup.put(HostRecord{0, "A", 16384, 32000, 0, true, true, true, "", 8192, 4000, "", 0});
  setup.put(HostRecord{1, "B", 131072, 8000, 0, true, true, true, "", 0, 0, "", 0});
  setup.put(HostRecord{2, "N", 16384, 8000, 2048, false, true, true, "rack2", 1024, 500, "{\"seen\":true}", 0});
  setup.put(VmRecord{0, "VM1", 0, 8192, 4000, 8192, std::nullopt, std::nullopt, "", 0});
  setup.put(VmRecord{1, "VM2", 0, 65536, 2000, 8192, std::nullopt, std::nullopt, "", 0});
  setup.put(VmRecord{2, "VM3", 2, 4096, 500, 1024, std::nullopt, std::nullopt, "", 0});
  out.push_back(std::move(setup));

  Batch need(30);
  need.event(EventRecord{0, 30, "need_detected", "VM2", "A", "", 49152});
  out.push_back(std::move(need));

  Batch reserve(30);
  reserve.put(LeaseRecord{1, 1, 1, 0, 49152, LeaseState::reserving, "rdma", "", 1, 0, 0});
  out.push_back(std::move(reserve));

  Batch grant(50);
  grant.put(LeaseRecord{1, 1, 1, 0, 49152, LeaseState::active, "rdma", "rkey=0x17;addr=0x7f0000000000", 1, 0, 0});
  grant.put(VmRecord{1, "VM2", 0, 65536, 2000, 8192, 50.0, std::nullopt, "{\"generation\":1}", 0});
  grant.put(MirrorRecord{1, "memlend-datastore/VM2.mirror", 49152LL << 20, 1LL << 30, MirrorState::writing, 0});
  grant.event(EventRecord{0, 50, "lease_granted", "VM2", "A", "B", 49152});
  grant.event(EventRecord{0, 50, "mirror_created", "VM2", "A", "", 49152});
  out.push_back(std::move(grant));

  Batch small(70);
  small.put(LeaseRecord{2, 2, 0, 2, 1024, LeaseState::active, "tcp", "tcp://A:7000/2", 1, 0, 0});
  small.put(LeaseRecord{3, 2, 1, 2, 2048, LeaseState::reserving, "tcp", "", 1, 0, 0});
  small.event(EventRecord{0, 70, "lease_granted", "VM3", "N", "A", 1024});
  out.push_back(std::move(small));

  Batch release(120);
  release.put(LeaseRecord{2, 2, 0, 2, 1024, LeaseState::released, "tcp", "tcp://A:7000/2", 1, 0, 0});
  release.event(EventRecord{0, 120, "lease_released", "VM3", "N", "A", 1024});
  out.push_back(std::move(release));

  Batch recommend(680);
  recommend.put(RecommendationRecord{1, 1, "it has used B's memory for 630 s and B can hold all of it", 0});
  recommend.event(EventRecord{0, 680, "migration_recommended", "VM2", "B", "", 65536});
  recommend.event(EventRecord{0, 680, "donor_failed", "", "N", "", std::nullopt});
  out.push_back(std::move(recommend));
  return out;
}

namespace {

void write_batches(const std::string& path, std::vector<store::Batch> batches) {
  auto s = store::Store::open(path);
  if (!s) throw std::runtime_error(s.error().message);
  for (auto& b : batches) {
    auto o = (*s)->commit(std::move(b));
    if (!o.ok()) throw std::runtime_error(o.error);
  }
}

}  // namespace

void write_sample_v1(const std::string& path) { write_batches(path, sample_v1()); }

store::HostRecord test_host(std::uint32_t id) {
  store::HostRecord r;
  r.id = id;
  r.name = std::string(1, static_cast<char>('A' + id));
  r.memory_mib = 65536;
  r.cpu_mhz = 16000;
  return r;
}

std::string bad_input_answer(const std::vector<std::string>& argv, const std::string& names, const std::string& what) {
  auto r = run_process(argv, 60);
  std::string wrong;
  if (r.status != 2) wrong += "exit status " + std::to_string(r.status) + ", not 2; ";
  if (!r.out.empty()) wrong += "stdout not empty; ";
  if (std::count(r.err.begin(), r.err.end(), '\n') != 1) wrong += "not one line on stderr; ";
  if (r.err.find("memlend: " + names) != 0) wrong += "stderr does not start with \"memlend: " + names + "\"; ";
  if (r.err.find(what) == std::string::npos) wrong += "stderr does not say \"" + what + "\"; ";
  return wrong.empty() ? wrong : wrong + "stderr: " + r.err;
}

std::vector<store::Batch> sample_v4() {
  using namespace memlend::store;
  std::vector<Batch> out;
  Batch grant(700);
  grant.put(LeaseRecord{3, 2, 1, 2, 2048, LeaseState::active, "tcp", "", 1, 0, 0});
  grant.event(EventRecord{0, 700, "lease_granted", "VM3", "N", "B", 2048,
                          "N has 1024 MiB free for it and B lends the other 2048 MiB"});
  grant.event(EventRecord{0, 700, "mirror_created", "VM3", "N", "", 2048, ""});
  out.push_back(std::move(grant));
  Batch nothing(710);
  nothing.event(EventRecord{0, 710, "unsatisfied", "VM1", "A", "", 4096, "no host can lend 4096 MiB"});
  out.push_back(std::move(nothing));
  return out;
}

std::vector<store::Batch> sample_v5() {
  std::vector<store::Batch> out;
  out.push_back(std::move(store::Batch(720).epoch(1)));
  out.push_back(std::move(store::Batch(730).epoch(2)));
  return out;
}

void write_sample_v5(const std::string& path) {
  auto all = sample_v1();
  for (auto& b : sample_v4()) all.push_back(std::move(b));
  for (auto& b : sample_v5()) all.push_back(std::move(b));
  write_batches(path, std::move(all));
}

void write_sample_v4(const std::string& path) {
  auto all = sample_v1();
  for (auto& b : sample_v4()) all.push_back(std::move(b));
  write_batches(path, std::move(all));
}

}  // namespace memlend::test
