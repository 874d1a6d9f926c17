#include "rdma/donor.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <thread>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace memlend::rdma {

namespace {

std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

std::uint64_t random_epoch() {
  std::uint64_t e = 0;
  while (e == 0) RAND_bytes(reinterpret_cast<unsigned char*>(&e), sizeof e);
  return e;
}

std::string mib_text(std::uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return buf;
}

}  // namespace

Expected<std::shared_ptr<DonorPool>> DonorPool::create(std::uint64_t bytes, const Secret& pool_secret,
                                                       const PoolOptions& options) {
  if (bytes == 0) return Error{"donor pool: size must be positive"};
  unsigned flags = MFD_CLOEXEC | (options.huge_pages ? MFD_HUGETLB : 0u);
  UniqueFd fd(::memfd_create("memlend-pool", flags));
  if (!fd) return sys_error(options.huge_pages ? "donor pool: memfd on huge pages" : "donor pool: memfd", errno);
  struct stat st {};
  ::fstat(fd.get(), &st);
  std::uint64_t page = options.huge_pages ? static_cast<std::uint64_t>(st.st_blksize)
                                          : static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  std::uint64_t size = round_up(bytes, page);
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) return sys_error("donor pool: sizing the memfd", errno);
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) return sys_error("donor pool: mapping " + mib_text(size), errno);
  return std::shared_ptr<DonorPool>(
      new DonorPool(size, page, pool_secret, std::move(fd), static_cast<std::uint8_t*>(base)));
}

DonorPool::DonorPool(std::uint64_t bytes, std::uint64_t page, const Secret& pool_secret, UniqueFd memfd,
                     std::uint8_t* base)
    : bytes_(bytes), page_(page), pool_secret_(pool_secret), pool_mac_(pool_secret), memfd_(std::move(memfd)),
      base_(base) {
  free_[0] = bytes;
}

DonorPool::~DonorPool() { ::munmap(base_, bytes_); }

Expected<LeaseGrant> DonorPool::grant(std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  while (leases_.count(next_id_) || next_id_ == 0) ++next_id_;
  return grant_locked(next_id_++, bytes);
}

Expected<LeaseGrant> DonorPool::grant(std::uint64_t lease_id, std::uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  if (lease_id == 0) return Error{"lease id 0 is reserved"};
  if (leases_.count(lease_id)) return Error{"lease " + std::to_string(lease_id) + " is already granted"};
  return grant_locked(lease_id, bytes);
}

Expected<LeaseGrant> DonorPool::grant_locked(std::uint64_t lease_id, std::uint64_t bytes) {
  if (bytes == 0) return Error{"lease of 0 bytes"};
  if (bytes > bytes_) return Error{"lease of " + mib_text(bytes) + " exceeds the pool (" + mib_text(bytes_) + ")"};
  std::uint64_t extent = round_up(bytes, page_);
  auto it = std::find_if(free_.begin(), free_.end(), [&](const auto& f) { return f.second >= extent; });
  if (it == free_.end()) {
    std::uint64_t total = 0, largest = 0;
    for (const auto& f : free_) {
      total += f.second;
      largest = std::max(largest, f.second);
    }
    return Error{"no room for " + mib_text(bytes) + ": " + mib_text(total) + " free, largest piece " +
                 mib_text(largest)};
  }
  std::uint64_t offset = it->first;
  std::uint64_t left = it->second - extent;
  free_.erase(it);
  if (left) free_[offset + extent] = left;
  // Whatever a previous lease left here is gone before anyone can read it.
  erase(offset, extent);
  std::uint64_t epoch = random_epoch();
  Secret secret = lease_secret(pool_secret_, lease_id, epoch);
  auto lease = std::make_shared<Lease>(weak_from_this(), lease_id, epoch, offset, bytes, extent, secret);
  leases_[lease_id] = lease;
  granted_ += bytes;
  return LeaseGrant{lease_id, epoch, bytes, secret};
}

Status DonorPool::revoke(std::uint64_t lease_id) {
  std::shared_ptr<Lease> lease;
  std::vector<RevokeHook> hooks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(lease_id);
    if (it == leases_.end()) return Error{"lease " + std::to_string(lease_id) + " is not granted"};
    lease = std::move(it->second);
    leases_.erase(it);
    granted_ -= lease->bytes();
    hooks = revoke_hooks_;
  }
  lease->mark_revoked();
  for (auto& h : hooks) h(lease_id);
  // The extent is erased and freed by ~Lease, once no connection touches it.
  // A TCP request in progress holds it for at most one I/O timeout, a verbs
  // connection until its teardown; waiting here means that, almost always,
  // the memory is back when revoke() returns.
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (lease.use_count() > 1 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return ok();
}

void DonorPool::on_revoke(RevokeHook hook) {
  std::lock_guard<std::mutex> lock(mu_);
  revoke_hooks_.push_back(std::move(hook));
}

std::shared_ptr<Lease> DonorPool::find(std::uint64_t lease_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(lease_id);
  return it == leases_.end() ? nullptr : it->second;
}

std::vector<std::uint64_t> DonorPool::lease_ids() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::uint64_t> ids;
  ids.reserve(leases_.size());
  for (const auto& [id, lease] : leases_) ids.push_back(id);
  return ids;
}

PoolStats DonorPool::stats() const {
  PoolStats s;
  struct stat st {};
  ::fstat(memfd_.get(), &st);
  std::lock_guard<std::mutex> lock(mu_);
  s.pool_bytes = bytes_;
  s.granted_bytes = granted_;
  s.resident_bytes = static_cast<std::uint64_t>(st.st_blocks) * 512;
  s.leases = leases_.size();
  s.discarded_bytes = discarded_;
  return s;
}

Status DonorPool::discard(const Lease& lease, std::uint64_t offset, std::uint64_t length) {
  if (!wire::in_bounds(offset, length, lease.bytes()))
    return Error{"discard of bytes " + std::to_string(offset) + "+" + std::to_string(length) + " outside lease " +
                 std::to_string(lease.id())};
  if (lease.revoked()) return Error{"discard in lease " + std::to_string(lease.id()) + ", revoked"};
  std::uint64_t begin = lease.offset() + offset;
  std::uint64_t end = begin + length;
  // The extent's tail past the lease's last byte is this lease's and nobody
  // reads it, so a range that reaches the end may free that last page whole.
  if (length > 0 && offset + length == lease.bytes()) end = lease.offset() + lease.extent();
  std::uint64_t whole_begin = round_up(begin, page_);
  std::uint64_t whole_end = end / page_ * page_;
  if (whole_begin >= whole_end) {
    std::memset(base_ + begin, 0, end - begin);
  } else {
    // The edges by hand: hugetlbfs punches whole pages only and leaves a
    // partial one as it was.
    std::memset(base_ + begin, 0, whole_begin - begin);
    erase(whole_begin, whole_end - whole_begin);
    std::memset(base_ + whole_end, 0, end - whole_end);
  }
  std::lock_guard<std::mutex> lock(mu_);
  discarded_ += length;
  return ok();
}

void DonorPool::erase(std::uint64_t offset, std::uint64_t length) {
  // Punching a hole both zeroes the range and hands its pages back to the OS.
  if (::fallocate(memfd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                  static_cast<off_t>(length)) != 0)
    std::memset(base_ + offset, 0, length);
}

void DonorPool::free_extent(std::uint64_t offset, std::uint64_t length) {
  erase(offset, length);
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = free_.emplace(offset, length);
  auto next = std::next(it);
  if (next != free_.end() && it->first + it->second == next->first) {
    it->second += next->second;
    free_.erase(next);
  }
  if (it != free_.begin()) {
    auto prev = std::prev(it);
    if (prev->first + prev->second == it->first) {
      prev->second += it->second;
      free_.erase(it);
    }
  }
}

Lease::Lease(std::weak_ptr<DonorPool> pool, std::uint64_t id, std::uint64_t epoch, std::uint64_t offset,
             std::uint64_t bytes, std::uint64_t extent, const Secret& secret)
    : pool_(std::move(pool)), id_(id), epoch_(epoch), offset_(offset), bytes_(bytes), extent_(extent),
      secret_(secret), mac_(secret) {}

Lease::~Lease() {
  if (auto pool = pool_.lock()) pool->free_extent(offset_, extent_);
}

}  // namespace memlend::rdma
