// What the store's tests share: temporary directories and filesystems, raw
// file access, and the sample data set that the schema fixtures hold.
#pragma once

#include "persistence/store.hpp"
#include "tests/support/child.hpp"  // read_file

#include <ostream>
#include <string>
#include <vector>

namespace memlend::store {

// For Boost.Test's messages.
inline std::ostream& operator<<(std::ostream& o, Status s) {
  return o << (s == Status::durable ? "durable" : s == Status::refused ? "refused" : "failed");
}

}  // namespace memlend::store

namespace memlend::test {

// A fresh directory, removed with everything in it when this goes.
struct TempDir {
  explicit TempDir(const std::string& tag);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
  std::string path;
};

// A small tmpfs, for a disk that fills up or turns read-only. Needs
// CAP_SYS_ADMIN; `mounted()` says whether it worked. Unmounted when it goes.
class Tmpfs {
 public:
  Tmpfs(const std::string& tag, std::size_t kib);
  ~Tmpfs();
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& path() const { return dir_.path; }
  std::string file(const std::string& name) const { return dir_.file(name); }
  bool remount_read_only();
  // Fills the filesystem to the last byte with one file; returns its path.
  std::string fill();

 private:
  TempDir dir_;
  bool mounted_ = false;
};

// Whether this process may mount a tmpfs (for test preconditions).
bool can_mount();

void write_file(const std::string& path, const std::string& bytes);
bool file_exists(const std::string& path);

// Runs SQL on a database with plain SQLite, behind the store's back.
void raw_sql(const std::string& db_path, const std::string& sql);
// The first column of the first row, as text ("" when there is none).
std::string raw_value(const std::string& db_path, const std::string& sql);

// Runs memlend's support tooling and checks its answer to bad input: exit
// status 2, nothing on stdout, one line on stderr that starts with `names`
// and says `what`. What is wrong with the answer, "" when nothing is.
// Host `id` of a test's cluster: named A, B, ... by id, 64 GiB, 16 GHz.
store::HostRecord test_host(std::uint32_t id);

std::string bad_input_answer(const std::vector<std::string>& argv, const std::string& names, const std::string& what);

// The sample data of schema version 1, as the batches that write it. Its
// contents must not change: fixtures/v1.sqlite holds it.
std::vector<store::Batch> sample_v1();
// Opens (creating) `path` and writes the sample; throws on any failure.
void write_sample_v1(const std::string& path);
// What schema version 4 adds after sample_v1(): decisions with their reasons
// beside an event that is none. fixtures/v4.sqlite holds both samples.
std::vector<store::Batch> sample_v4();
void write_sample_v4(const std::string& path);
// Version 5 keeps the leadership epoch: two controllers started on it (epoch
// 2). fixtures/v5.sqlite holds every sample.
std::vector<store::Batch> sample_v5();
void write_sample_v5(const std::string& path);

}  // namespace memlend::test
