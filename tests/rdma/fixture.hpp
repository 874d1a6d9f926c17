// Shared pieces of the data path's tests: an in-process donor, patterns,
// temporary directories that clean up after themselves.
#pragma once

#include "rdma/donor.hpp"
#include "rdma/region.hpp"

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

namespace memlend::test {

// The value of the 8-byte word at `offset` in pass `pass`: every word of
// every pass differs, so a stale or misplaced block cannot pass for another.
inline std::uint64_t pattern_word(std::uint64_t pass, std::uint64_t offset) {
  std::uint64_t x = (pass + 1) * 0x9E3779B97F4A7C15ull ^ offset;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  return x;
}

inline void fill(void* p, std::uint64_t bytes, std::uint64_t pass, std::uint64_t from = 0) {
  auto* b = static_cast<std::uint8_t*>(p);
  for (std::uint64_t off = from; off + 8 <= bytes; off += 8) {
    std::uint64_t w = pattern_word(pass, off);
    std::memcpy(b + off, &w, 8);
  }
}

// Mismatching words in [from, end) of the region at `p`.
inline std::uint64_t check(const void* p, std::uint64_t end, std::uint64_t pass, std::uint64_t from = 0) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  std::uint64_t bad = 0;
  for (std::uint64_t off = from; off + 8 <= end; off += 8) {
    std::uint64_t w;
    std::memcpy(&w, b + off, 8);
    if (w != pattern_word(pass, off)) ++bad;
  }
  return bad;
}

class TempDir {
 public:
  explicit TempDir(const std::string& tag);
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A donor pool and server in this process, on a loopback port.
struct LocalDonor {
  explicit LocalDonor(std::uint64_t pool_bytes, rdma::ServerOptions options = {});
  rdma::LeaseTarget lease(std::uint64_t bytes);
  rdma::DonorLink link(const rdma::LeaseTarget& lease, rdma::Timeouts t = {});

  rdma::Secret secret;
  std::shared_ptr<rdma::DonorPool> pool;
  std::unique_ptr<rdma::DonorServer> server;
};

}  // namespace memlend::test
