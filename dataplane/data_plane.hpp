// The data path as one process sees it: the donor pools and servers of the
// hosts it stands for (every simulated host in `memlend run`, its own host in
// `memlend agent`), and, on the recipient side, the remote regions of the VMs
// running there with their mirrors, which a workload (the demo's guest) may
// touch region by region.
//
// Plain C++ (no CAF). Every call that may block (connecting, granting,
// re-homing, detaching) runs on the plane's own worker thread: actors post()
// work and get on with their messages. Sizes are scaled: `bytes_per_mib` real
// bytes stand for each MiB the control plane lends.
#pragma once

#include "core/expected.hpp"
#include "core/lease_access.hpp"
#include "dataplane/guest_memory.hpp"
#include "rdma/common.hpp"
#include "rdma/donor.hpp"
#include "rdma/mirror.hpp"
#include "rdma/region.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace memlend {

struct DataPlaneOptions {
  std::uint64_t bytes_per_mib = 1024;   // 1 MiB of real memory per GiB lent
  std::uint64_t block_bytes = 1 << 20;  // rdma_block_kib
  std::uint64_t buffer_bytes = 1 << 20; // the local buffer per lease
  std::string datastore;                // where mirror files go
  rdma::TransportKind transport = rdma::TransportKind::tcp;
  rdma::Timeouts timeouts;
};

// What the data path has done since the plane started, over every region it
// has mapped (ended ones included), for metrics.
struct DataPathTotals {
  std::uint64_t faults = 0;         // missing and write-protect faults: what fault_latency times
  std::uint64_t bytes_read = 0;     // fetched from donors
  std::uint64_t bytes_written = 0;  // written back to donors
  std::uint64_t mirror_bytes_written = 0;  // to mirror files on the datastore
  rdma::LatencyHistogram::Snapshot fault_latency;
  // By VM, of its regions now: written back to a donor and not (yet) to the
  // mirror; above 0 only while a mirror is broken or behind.
  std::map<std::string, std::uint64_t> mirror_lag;
};

class DataPlane {
 public:
  explicit DataPlane(DataPlaneOptions options);
  ~DataPlane();
  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  const DataPlaneOptions& options() const { return options_; }
  std::uint64_t bytes(std::int64_t mib) const { return static_cast<std::uint64_t>(mib) * options_.bytes_per_mib; }

  // Runs `job` on the plane's worker thread, in order; `what` names it in
  // the line a stop prints when it cannot wait for the job.
  void post(std::function<void()> job, std::string what = "a data-path job");
  // Waits until every job posted so far has run, or `limit` has passed:
  // false then, and busy_with() says what is still going on.
  bool drain_for(std::chrono::milliseconds limit);
  std::string busy_with() const;
  // Detaches the regions (stop a workload touching them first), stops the servers and joins the
  // worker, dropping jobs not started; bounded, idempotent. Call it holding
  // a reference (see the destructor).
  void shutdown();

  // ---- donor side (worker thread) ----
  // A pool of `mib` scaled, and a server for it on `listen`, with the pool
  // secret given (an agent's, from its key) or a random one.
  Expected<std::string> serve(const std::string& host, std::int64_t mib, const std::string& listen,
                              std::optional<rdma::Secret> pool_secret = std::nullopt);
  // The host's memory is gone (its process died, in the simulation).
  void stop_serving(const std::string& host);
  // Where a host's data path listens: its own server here, or what its agent said.
  std::string address(const std::string& host) const;
  void set_address(const std::string& host, const std::string& addr);
  // Another host's pool secret, as its agent told the controller when it joined.
  void set_pool_secret(const std::string& host, const rdma::Secret& secret);
  // The secret of lease `id`/`epoch` of `host`'s pool, as hex; empty while
  // that pool's secret is unknown here.
  std::string lease_secret_hex(const std::string& host, std::uint64_t id, std::uint64_t epoch) const;
  // Fencing: ends a lease of this host's pool (its id there).
  void revoke(const std::string& host, std::uint64_t pool_lease);
  // The leases this host's pool has granted and not revoked, by their ids there.
  std::vector<std::uint64_t> pool_leases(const std::string& host) const;

  // ---- control plane (worker thread) ----
  // A lease of `mib` at the donor at `addr` (with the donor's pool secret:
  // its own pool here, or what its agent said).
  Expected<LeaseAccess> grant(const std::string& donor_host, const std::string& addr, std::int64_t mib);
  void release(const std::string& donor_host, const LeaseAccess& lease);

  // ---- recipient side (worker thread) ----
  // Serves the memory of real QEMU guests (guest_memory.hpp): leases of the
  // VMs it names go to their memory files and are plugged through QMP,
  // unscaled (the CLI allows them only at 1 MiB per MiB). Once, before any
  // lease is attached.
  rdma::Status serve_guests(GuestMemoryOptions options);
  const GuestMemory* guests() const { return guests_.get(); }
  // A region for control-plane lease `lease` of `vm`, reaching `access`.
  rdma::Status attach(const std::string& vm, std::uint64_t lease, std::int64_t mib, const LeaseAccess& access);
  // The control plane knows the donor is gone: read the mirror from now on.
  void fail_over(const std::string& vm, std::uint64_t lease, const std::string& why);
  // The failed lease `old_lease` goes to `access` (new control-plane id `lease`).
  rdma::Status rehome(const std::string& vm, std::uint64_t old_lease, std::uint64_t lease, const LeaseAccess& access);
  // Ends a region (its lease is released by the caller).
  void detach(const std::string& vm, std::uint64_t lease);
  // The recipient is gone or borrows nothing: its mirror goes too.
  void remove_mirror(const std::string& vm);
  bool has_region(const std::string& vm, std::uint64_t lease) const;
  std::vector<std::uint64_t> regions_of(const std::string& vm) const;

  // A region as a workload touches it: its VM, the lease it was made for
  // (re-homing keeps it), and its memory.
  struct Touch {
    const std::string& vm;
    std::uint64_t origin;
    rdma::RemoteRegion& region;
  };
  // Runs `visit` on the n-th region (counted modulo their number) holding
  // its touch lock, so that it is not detached meanwhile; false if there is
  // no region.
  bool touch_region(std::size_t n, const std::function<void(const Touch&)>& visit);
  rdma::RegionStats region_stats(const std::string& vm, std::uint64_t lease) const;
  DataPathTotals totals() const;
  // Told (on the regions' threads) what a region reports; set or cleared
  // at any time, and never called once cleared.
  using RegionListener = std::function<void(const std::string& vm, std::uint64_t lease, const rdma::RegionEvent&)>;
  void set_region_listener(RegionListener listener);

 private:
  struct Region {
    std::string vm;
    std::uint64_t lease = 0;
    std::uint64_t origin = 0;  // the lease it was made for; re-homing keeps it
    std::unique_ptr<rdma::RemoteRegion> region;
    std::mutex touch;  // held by a workload while it reads or writes the memory
  };
  struct Vm {
    std::shared_ptr<rdma::MirrorFile> mirror;
    std::uint64_t next_slice = 0;
    std::map<std::uint64_t, std::uint64_t> slices;  // lease → offset in the mirror
  };
  struct Donor {
    std::shared_ptr<rdma::DonorPool> pool;
    std::unique_ptr<rdma::DonorServer> server;
  };

  std::optional<rdma::Secret> pool_secret(const std::string& host) const;
  rdma::RegionConfig region_config(Vm& v, const std::string& vm, std::uint64_t lease, std::uint64_t bytes);
  void worker_loop();

  DataPlaneOptions options_;
  mutable std::mutex mu_;  // donors_, vms_, regions_
  std::map<std::string, Donor> donors_;
  std::map<std::string, std::string> book_;  // other hosts' data path addresses
  std::map<std::string, rdma::Secret> keys_;  // other hosts' pool secrets
  std::map<std::string, Vm> vms_;
  DataPathTotals ended_;  // what detached regions did (no mirror_lag)
  std::map<std::pair<std::string, std::uint64_t>, std::shared_ptr<Region>> regions_;

  std::unique_ptr<GuestMemory> guests_;  // set once, before any lease
  std::mutex listener_mu_;
  RegionListener listener_;
  mutable std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::deque<std::pair<std::string, std::function<void()>>> jobs_;
  std::size_t running_ = 0;
  std::string current_;  // what the running job is
  std::condition_variable idle_cv_;
  std::atomic<bool> stopping_{false};
  std::thread worker_;
};

}  // namespace memlend
