// The donor side: a pool of memory a host lends, the leases cut from it, and
// the server that lets recipients reach their lease over TCP or verbs.
//
// The pool is one memfd (hugetlbfs-backed where configured). A lease is an
// extent of it. Granting punches the extent out first, so a new lease reads
// zeros whatever the pool held; revoking punches it out again, which both
// erases the data and gives the memory back to the OS at once. A recipient
// may do the same to part of its lease while it holds it (discard).
#pragma once

#include "rdma/common.hpp"
#include "rdma/protocol.hpp"
#include "rdma/transport.hpp"

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace memlend::rdma {

struct PoolOptions {
  // Back the pool with huge pages (MFD_HUGETLB): fewer TLB misses and, under
  // verbs, fewer pages to pin. Needs huge pages reserved by the operator.
  bool huge_pages = false;
};

struct LeaseGrant {
  std::uint64_t id = 0;
  // Changes on every grant, so the same id granted twice has two secrets.
  std::uint64_t epoch = 0;
  std::uint64_t bytes = 0;
  Secret secret{};
};

struct PoolStats {
  std::uint64_t pool_bytes = 0;
  std::uint64_t granted_bytes = 0;   // sum of live leases' sizes
  std::uint64_t resident_bytes = 0;  // memory the pool really holds now
  std::uint64_t leases = 0;          // not known to DonorClient::stats()
  std::uint64_t discarded_bytes = 0; // the ranges recipients discarded, summed
};

// One lease's extent of the pool. Connections hold a reference while they
// touch its memory; the extent goes back to the pool (erased) only when the
// last reference is gone, so a revoked lease's bytes can never be reached by
// the next lease cut from the same extent.
class Lease;

class DonorPool : public std::enable_shared_from_this<DonorPool> {
 public:
  static Expected<std::shared_ptr<DonorPool>> create(std::uint64_t bytes, const Secret& pool_secret,
                                                     const PoolOptions& options = {});
  ~DonorPool();

  // Sizes are arbitrary; extents are rounded up to the pool's page size.
  Expected<LeaseGrant> grant(std::uint64_t bytes);
  // The control plane names its leases itself (LeaseInfo.id).
  Expected<LeaseGrant> grant(std::uint64_t lease_id, std::uint64_t bytes);
  // Ends the lease: connections to it are cut, its memory is erased and
  // released — when this returns, unless a connection is stuck mid-transfer
  // (then as soon as it lets go; at most ~10 s are spent waiting here).
  // Unknown ids are an error (a double release is a bug upstream).
  Status revoke(std::uint64_t lease_id);

  // The range of the lease reads zeros afterwards: its whole pages are
  // punched out of the pool (their memory goes back to the OS), the partial
  // pages at its ends zeroed. An error, touching nothing, if the range is not
  // within the lease or the lease was revoked.
  Status discard(const Lease& lease, std::uint64_t offset, std::uint64_t length);

  PoolStats stats() const;
  const Secret& pool_secret() const { return pool_secret_; }
  const wire::Mac& pool_mac() const { return pool_mac_; }

  // For the servers: a live lease or null; the pool's mapping.
  std::shared_ptr<Lease> find(std::uint64_t lease_id) const;
  // The leases granted and not revoked, in id order (ids only grow, so the
  // order is that of the grants).
  std::vector<std::uint64_t> lease_ids() const;
  std::uint8_t* base() const { return base_; }
  int memfd() const { return memfd_.get(); }

  // Servers are told of revocations so they can cut connections at once.
  using RevokeHook = std::function<void(std::uint64_t lease_id)>;
  void on_revoke(RevokeHook hook);

 private:
  friend class Lease;
  DonorPool(std::uint64_t bytes, std::uint64_t page, const Secret& pool_secret, UniqueFd memfd,
            std::uint8_t* base);
  Expected<LeaseGrant> grant_locked(std::uint64_t lease_id, std::uint64_t bytes);
  void free_extent(std::uint64_t offset, std::uint64_t length);
  void erase(std::uint64_t offset, std::uint64_t length);

  std::uint64_t bytes_;
  std::uint64_t page_;
  Secret pool_secret_;
  wire::Mac pool_mac_;
  UniqueFd memfd_;
  std::uint8_t* base_;
  mutable std::mutex mu_;
  std::map<std::uint64_t, std::uint64_t> free_;  // offset → length, coalesced
  std::map<std::uint64_t, std::shared_ptr<Lease>> leases_;
  std::uint64_t next_id_ = 1;
  std::uint64_t granted_ = 0;
  std::uint64_t discarded_ = 0;
  std::vector<RevokeHook> revoke_hooks_;
};

class Lease {
 public:
  Lease(std::weak_ptr<DonorPool> pool, std::uint64_t id, std::uint64_t epoch, std::uint64_t offset,
        std::uint64_t bytes, std::uint64_t extent, const Secret& secret);
  ~Lease();
  std::uint64_t id() const { return id_; }
  std::uint64_t epoch() const { return epoch_; }
  std::uint64_t offset() const { return offset_; }  // in the pool
  std::uint64_t bytes() const { return bytes_; }
  std::uint64_t extent() const { return extent_; }  // bytes() rounded up to the pool's page
  const Secret& secret() const { return secret_; }
  const wire::Mac& mac() const { return mac_; }
  bool revoked() const { return revoked_.load(); }
  void mark_revoked() { revoked_.store(true); }

 private:
  std::weak_ptr<DonorPool> pool_;
  std::uint64_t id_, epoch_, offset_, bytes_, extent_;
  Secret secret_;
  wire::Mac mac_;
  std::atomic<bool> revoked_{false};
};

struct ServerOptions {
  std::string listen = "127.0.0.1:0";
  // Data path offered besides the TCP control channel (grant, release),
  // which every donor serves.
  TransportKind transport = TransportKind::automatic;
  Timeouts timeouts;
  // A lease whose connections all closed without a release: its recipient
  // died. The server reports it; with reclaim_orphans it also revokes it (the
  // `memlend donor` tool does; the controller decides itself, since it also
  // deletes the VM's mirror).
  bool reclaim_orphans = false;
  std::function<void(std::uint64_t lease_id)> on_orphan;
  // Log lines (info level), e.g. which transport `automatic` picked and why.
  std::function<void(const std::string&)> log;
  // A connection is unauthenticated until its first request carries a valid
  // tag (the pool secret's or a lease's). Until then it costs a thread and a
  // descriptor to anyone who can reach the port, so it must authenticate
  // within hello_timeout, and at most max_unauthenticated of them are kept:
  // a new one beyond that drops the oldest, which lets a real client in
  // however many idle connections a flood holds. Authenticated connections
  // have no idle timeout (a data connection sits idle between faults);
  // TCP keepalive notices a peer that vanished.
  Millis hello_timeout{5000};
  std::size_t max_unauthenticated = 64;
};

// What the server's acceptor has done, for tests and the log.
struct ServerStats {
  std::uint64_t accept_calls = 0;     // accept4() calls, successful or not
  std::uint64_t accepted = 0;
  std::uint64_t out_of_fds = 0;       // accepts refused by the descriptor limit
  std::uint64_t shed = 0;             // closed unserved for want of a descriptor or a thread
  std::uint64_t hello_timeouts = 0;   // closed for not authenticating in time
  std::uint64_t evicted = 0;          // unauthenticated, dropped to make room
  std::uint64_t unauthenticated = 0;  // open now
};

class DonorServer {
 public:
  static Expected<std::unique_ptr<DonorServer>> start(std::shared_ptr<DonorPool> pool, ServerOptions options);
  virtual ~DonorServer() = default;
  // The address really bound ("127.0.0.1:40123" for port 0).
  virtual std::string address() const = 0;
  virtual TransportKind transport() const = 0;
  virtual ServerStats stats() const = 0;
  // Cuts every connection and joins every thread; idempotent.
  virtual void stop() = 0;
};

// A recipient's (or an operator tool's) control channel to a donor: asks for
// a lease and gives it back. Authenticated with the pool secret, at once on
// connect (a wrong secret fails there, and the donor's hello_timeout cannot
// cut a client that connected early and asks later).
class DonorClient {
 public:
  static Expected<std::unique_ptr<DonorClient>> connect(const std::string& donor, const Secret& pool_secret,
                                                        const Timeouts& timeouts = {});
  virtual ~DonorClient() = default;
  virtual Expected<LeaseTarget> grant(std::uint64_t bytes) = 0;
  virtual Status release(const LeaseTarget& lease) = 0;
  virtual Expected<PoolStats> stats() = 0;
};

}  // namespace memlend::rdma
