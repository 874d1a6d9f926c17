// What the guest tests and bench_guest share, with no test framework in it:
// the build tree's guest image, whether a guest can boot here, booting one
// with its memory plugged, the fields of its result line, and memory a
// `memlend donor` lends through `memlend mount`, as an operator runs them.
#pragma once

#include "tests/rdma/fixture.hpp"
#include "tests/support/qemu_guest.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace memlend::test {

inline constexpr std::uint64_t mib = 1 << 20;

// What the build's guest_image target made.
const GuestImage& image();

// Why no guest can boot here (not root, no QEMU, no image); "" when one can.
std::string why_no_guest();
// As why_no_guest, or why QEMU could not run in a memory cgroup of its own.
std::string why_no_guest_in_a_cgroup();
// Why there can be no `memlend mount` here; "" when there can.
std::string why_no_fuse();

// KEY=N from a guest's result line; ~0 when it is not there.
std::uint64_t field(const std::string& line, const std::string& key);
std::string tail(const std::string& text, std::size_t n = 3000);
double seconds_since(std::chrono::steady_clock::time_point t);

struct PlugOptions {
  std::string memory_file;
  std::uint64_t memdev = 0;  // the device's size
  std::uint64_t plug = 0;    // what the guest is given and waits for
  std::string kernel_args;   // the guest program's settings beyond the plug's
  std::uint64_t cgroup_limit = 0;
};

// Boots the guest on `memory_file` and plugs `plug` through QMP, asked at
// once: QEMU holds the request until the guest's driver comes up. The guest
// stays up after its last line until the caller ends it. The error says why,
// with the console's tail.
Expected<std::unique_ptr<QemuGuest>> boot_and_plug(const PlugOptions& o);

// QMP's quit, then QEMU's exit status (Child::wait's).
Expected<int> quit(QemuGuest& g);

// A sparse file of `bytes` in a directory of its own, on whatever the
// temporary directory is.
struct LocalMemory {
  explicit LocalMemory(std::uint64_t bytes);
  std::string file() const { return dir.path() + "/memory"; }
  // Whether the file is in RAM itself (tmpfs): its pages can then go nowhere
  // but swap, unlike those of a file a server or a disk holds.
  bool in_ram() const;

  TempDir dir;
};

// A `memlend donor` and a `memlend mount` of `memdev` bytes of it, in a
// directory on disk, with a mirror there unless `mirror` is false (a mirror
// on tmpfs would hold the guest's memory in RAM). Throws when either does not
// start, with its stderr.
struct LentMemory {
  explicit LentMemory(std::uint64_t memdev, bool mirror = true);
  std::string file() const { return mnt + "/memory"; }
  // Stops the mount (the guest must be gone) and returns its counters
  // (--json); throws when it did not end well.
  nlohmann::json counters();

  TempDir dir;
  DonorProcess donor;
  std::string mnt;
  std::unique_ptr<Child> mount;
};

}  // namespace memlend::test
