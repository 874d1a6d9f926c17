#include "dataplane/data_plane.hpp"

#include <algorithm>
#include <chrono>
#include <vector>

namespace memlend {

namespace {

void add_region(DataPathTotals& t, const rdma::RegionStats& s) {
  t.faults += s.faults + s.write_faults;
  t.bytes_read += s.bytes_read;
  t.bytes_written += s.bytes_written;
  t.mirror_bytes_written += s.mirror_bytes_written;
  t.fault_latency.merge(s.fault_latency);
}

}  // namespace

DataPlane::DataPlane(DataPlaneOptions options) : options_(std::move(options)) {
  worker_ = std::thread([this] { worker_loop(); });
}

// Nothing here waits without an end: a stop must end the process in
// seconds even if a job is stuck. The regions go first (a workload touching
// them was stopped before), whose detach ends a re-home
// in progress, then the servers, which ends a grant or a connect; only then
// is the worker joined. Jobs not yet started are dropped: the store keeps
// what they were for, and the next start takes it up.
//
// Jobs hold references to the plane: its owner calls this while it still
// holds its own, so that the last reference never goes on the worker, which
// cannot join itself.
DataPlane::~DataPlane() { shutdown(); }

void DataPlane::shutdown() {
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    stopping_ = true;
  }
  jobs_cv_.notify_all();
  auto detach_all = [this] {
    std::map<std::pair<std::string, std::uint64_t>, std::shared_ptr<Region>> regions;
    {
      std::lock_guard<std::mutex> lock(mu_);
      regions.swap(regions_);
    }
    for (auto& [key, r] : regions) r->region->detach();
  };
  detach_all();
  if (guests_) guests_->stop();
  std::vector<rdma::DonorServer*> servers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [host, d] : donors_)
      if (d.server) servers.push_back(d.server.get());
  }
  for (auto* server : servers) server->stop();
  if (worker_.joinable()) worker_.join();
  detach_all();  // what a job that was running mapped meanwhile
  // Jobs never run go here, on the caller's thread, which holds a reference.
  std::deque<std::pair<std::string, std::function<void()>>> dropped;
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    dropped.swap(jobs_);
  }
}

void DataPlane::set_region_listener(RegionListener listener) {
  std::lock_guard<std::mutex> lock(listener_mu_);
  listener_ = std::move(listener);
}

void DataPlane::post(std::function<void()> job, std::string what) {
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    jobs_.emplace_back(std::move(what), std::move(job));
  }
  jobs_cv_.notify_one();
}

bool DataPlane::drain_for(std::chrono::milliseconds limit) {
  std::unique_lock<std::mutex> lock(jobs_mu_);
  return idle_cv_.wait_for(lock, limit, [this] { return jobs_.empty() && running_ == 0; });
}

std::string DataPlane::busy_with() const {
  std::lock_guard<std::mutex> lock(jobs_mu_);
  std::string out = running_ ? current_ : "idle";
  if (!jobs_.empty()) out += ", with " + std::to_string(jobs_.size()) + " more queued (" + jobs_.front().first + ", ...)";
  return out;
}

void DataPlane::worker_loop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(jobs_mu_);
      jobs_cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (stopping_ || jobs_.empty()) return;
      current_ = std::move(jobs_.front().first);
      job = std::move(jobs_.front().second);
      jobs_.pop_front();
      ++running_;
    }
    job();
    job = nullptr;  // its references go before drain_for() says it is done
    {
      std::lock_guard<std::mutex> lock(jobs_mu_);
      --running_;
    }
    idle_cv_.notify_all();
  }
}

// Per host and unrelated across hosts: a node that holds one pool's secret
// (its own) can derive no other.
std::optional<rdma::Secret> DataPlane::pool_secret(const std::string& host) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = donors_.find(host); it != donors_.end()) return it->second.pool->pool_secret();
  if (auto it = keys_.find(host); it != keys_.end()) return it->second;
  return std::nullopt;
}

void DataPlane::set_pool_secret(const std::string& host, const rdma::Secret& secret) {
  std::lock_guard<std::mutex> lock(mu_);
  keys_[host] = secret;
}

std::string DataPlane::lease_secret_hex(const std::string& host, std::uint64_t id, std::uint64_t epoch) const {
  auto pool = pool_secret(host);
  return pool ? to_hex(rdma::lease_secret(*pool, id, epoch)) : std::string();
}

Expected<std::string> DataPlane::serve(const std::string& host, std::int64_t mib, const std::string& listen,
                                       std::optional<rdma::Secret> pool_secret) {
  auto pool = rdma::DonorPool::create(bytes(mib), pool_secret ? *pool_secret : rdma::random_secret());
  if (!pool) return Error{"donor pool for " + host + ": " + pool.error().message};
  rdma::ServerOptions so;
  so.listen = listen;
  so.transport = options_.transport;
  so.timeouts = options_.timeouts;
  auto server = rdma::DonorServer::start(*pool, so);
  if (!server) return Error{"data path of " + host + " on " + listen + ": " + server.error().message};
  std::string addr = (*server)->address();
  std::lock_guard<std::mutex> lock(mu_);
  donors_[host] = {*pool, std::move(*server)};
  return addr;
}

void DataPlane::stop_serving(const std::string& host) {
  Donor gone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = donors_.find(host);
    if (it == donors_.end()) return;
    gone = std::move(it->second);
    donors_.erase(it);
  }
  if (gone.server) gone.server->stop();
}

std::string DataPlane::address(const std::string& host) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = donors_.find(host);
  if (it != donors_.end() && it->second.server) return it->second.server->address();
  auto b = book_.find(host);
  return b == book_.end() ? std::string() : b->second;
}

void DataPlane::set_address(const std::string& host, const std::string& addr) {
  std::lock_guard<std::mutex> lock(mu_);
  book_[host] = addr;
}

void DataPlane::revoke(const std::string& host, std::uint64_t pool_lease) {
  std::shared_ptr<rdma::DonorPool> pool;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = donors_.find(host);
    if (it == donors_.end()) return;
    pool = it->second.pool;
  }
  pool->revoke(pool_lease);
}

std::vector<std::uint64_t> DataPlane::pool_leases(const std::string& host) const {
  std::shared_ptr<rdma::DonorPool> pool;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = donors_.find(host);
    if (it == donors_.end()) return {};
    pool = it->second.pool;
  }
  return pool->lease_ids();
}

Expected<LeaseAccess> DataPlane::grant(const std::string& donor_host, const std::string& addr, std::int64_t mib) {
  auto key = pool_secret(donor_host);
  if (!key) return Error{"no pool secret for " + donor_host + ": its agent has not joined"};
  auto client = rdma::DonorClient::connect(addr, *key, options_.timeouts);
  if (!client) return Error{"cannot reach " + donor_host + "'s data path at " + addr + ": " + client.error().message};
  auto access = (*client)->grant(bytes(mib));
  if (!access) return Error{donor_host + " refused a lease: " + access.error().message};
  return rdma::access_of(*access);
}

void DataPlane::release(const std::string& donor_host, const LeaseAccess& lease) {
  // The store keeps no secret: after a restart the lease's is derived again.
  LeaseAccess known = lease;
  if (known.secret.empty()) known.secret = lease_secret_hex(donor_host, lease.id, lease.epoch);
  auto a = rdma::target_of(known, 0);
  auto key = pool_secret(donor_host);
  if (lease.addr.empty() || !a || !key) return;
  auto client = rdma::DonorClient::connect(lease.addr, *key, options_.timeouts);
  if (!client) return;  // the donor is gone, and its memory with it
  (*client)->release(*a);
}

rdma::RegionConfig DataPlane::region_config(Vm& v, const std::string& vm, std::uint64_t lease, std::uint64_t bytes) {
  rdma::RegionConfig c;
  c.bytes = bytes;
  c.block_bytes = options_.block_bytes;
  c.buffer_bytes = std::max(options_.buffer_bytes, options_.block_bytes);
  c.mirror = v.mirror;
  auto slice = v.slices.find(lease);
  if (slice == v.slices.end()) {
    slice = v.slices.emplace(lease, v.next_slice).first;
    v.next_slice += (bytes + options_.block_bytes - 1) / options_.block_bytes * options_.block_bytes;
  }
  c.mirror_offset = slice->second;
  c.timeouts = options_.timeouts;
  c.on_event = [this, vm, lease](const rdma::RegionEvent& e) {
    // Under the lock: once cleared, the listener's target may be gone.
    std::lock_guard<std::mutex> lock(listener_mu_);
    if (listener_) listener_(vm, lease, e);
  };
  return c;
}

rdma::Status DataPlane::serve_guests(GuestMemoryOptions options) {
  if (guests_) return Error{"guest memory is served already"};
  options.datastore = options_.datastore;
  options.transport = options_.transport;
  options.timeouts = options_.timeouts;
  options.on_event = [this](const std::string& vm, std::uint64_t lease, const rdma::RegionEvent& e) {
    std::lock_guard<std::mutex> lock(listener_mu_);
    if (listener_) listener_(vm, lease, e);
  };
  auto g = GuestMemory::start(options);
  if (!g) return g.error();
  guests_ = std::move(*g);
  return rdma::ok();
}

rdma::Status DataPlane::attach(const std::string& vm, std::uint64_t lease, std::int64_t mib, const LeaseAccess& access) {
  auto a = rdma::target_of(access, bytes(mib));
  if (!a) return Error{a.error().message};
  if (guests_ && guests_->serves(vm)) return guests_->attach(vm, lease, *a);
  auto link = rdma::connect_link(*a, options_.transport, options_.timeouts);
  if (!link) return Error{"connecting to " + access.addr + ": " + link.error().message};
  rdma::RegionConfig config;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Vm& v = vms_[vm];
    if (!v.mirror) {
      auto m = rdma::MirrorFile::open(options_.datastore, vm, 0);
      if (!m) return Error{"mirror of " + vm + ": " + m.error().message};
      v.mirror = *m;
    }
    config = region_config(v, vm, lease, a->bytes);
    std::uint64_t end = config.mirror_offset + a->bytes;
    if (v.mirror->bytes() < end) v.mirror->resize(end);
  }
  auto region = rdma::RemoteRegion::create(config, std::move(*link));
  if (!region) return Error{"region for " + vm + ": " + region.error().message};
  auto r = std::make_shared<Region>();
  r->vm = vm;
  r->lease = lease;
  r->origin = lease;
  r->region = std::move(*region);
  std::lock_guard<std::mutex> lock(mu_);
  regions_[{vm, lease}] = r;
  return rdma::ok();
}

void DataPlane::fail_over(const std::string& vm, std::uint64_t lease, const std::string& why) {
  if (guests_ && guests_->serves(vm)) return guests_->fail_over(vm, lease, why);
  std::shared_ptr<Region> r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = regions_.find({vm, lease});
    if (it == regions_.end()) return;
    r = it->second;
  }
  r->region->fail_over(why);
}

rdma::Status DataPlane::rehome(const std::string& vm, std::uint64_t old_lease, std::uint64_t lease,
                               const LeaseAccess& access) {
  if (guests_ && guests_->serves(vm)) {
    auto a = rdma::target_of(access, 0);
    if (!a) return Error{a.error().message};
    return guests_->rehome(vm, old_lease, lease, *a);
  }
  std::shared_ptr<Region> r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = regions_.find({vm, old_lease});
    if (it == regions_.end()) return Error{"no region for lease " + std::to_string(old_lease)};
    r = it->second;
  }
  auto a = rdma::target_of(access, r->region->size());
  if (!a) return Error{a.error().message};
  auto link = rdma::connect_link(*a, options_.transport, options_.timeouts);
  if (!link) return Error{"connecting to " + access.addr + ": " + link.error().message};
  auto done = r->region->rehome(std::move(*link));
  if (!done) return done;
  std::lock_guard<std::mutex> lock(mu_);
  regions_.erase({vm, old_lease});
  r->lease = lease;
  regions_[{vm, lease}] = r;
  auto& slices = vms_[vm].slices;
  if (auto s = slices.find(old_lease); s != slices.end()) {
    slices[lease] = s->second;
    slices.erase(old_lease);
  }
  return rdma::ok();
}

void DataPlane::detach(const std::string& vm, std::uint64_t lease) {
  if (guests_ && guests_->serves(vm)) {
    // A guest that will not give the memory back keeps the lease's blocks
    // in its file; the lease is released by the caller all the same, and
    // those blocks then fail as a dead donor's would.
    (void)guests_->detach(vm, lease);
    return;
  }
  std::shared_ptr<Region> r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = regions_.find({vm, lease});
    if (it == regions_.end()) return;
    r = it->second;
    regions_.erase(it);
  }
  std::lock_guard<std::mutex> touch(r->touch);
  r->region->detach();
  // Counters must not go back when a region ends: its final figures stay.
  rdma::RegionStats last = r->region->stats();
  std::lock_guard<std::mutex> lock(mu_);
  add_region(ended_, last);
}

void DataPlane::remove_mirror(const std::string& vm) {
  // A guest's memory file keeps its mirror for as long as it is served: the
  // file outlives its leases.
  if (guests_ && guests_->serves(vm)) return;
  std::shared_ptr<rdma::MirrorFile> m;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = vms_.find(vm);
    if (it != vms_.end()) m = it->second.mirror;
    vms_.erase(vm);
  }
  if (m)
    m->remove();
  else
    rdma::remove_mirror(rdma::mirror_path(options_.datastore, vm));
}

bool DataPlane::has_region(const std::string& vm, std::uint64_t lease) const {
  if (guests_ && guests_->serves(vm)) {
    auto ids = guests_->leases_of(vm);
    return std::find(ids.begin(), ids.end(), lease) != ids.end();
  }
  std::lock_guard<std::mutex> lock(mu_);
  return regions_.count({vm, lease}) > 0;
}

std::vector<std::uint64_t> DataPlane::regions_of(const std::string& vm) const {
  if (guests_ && guests_->serves(vm)) return guests_->leases_of(vm);
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::uint64_t> out;
  for (const auto& [key, r] : regions_)
    if (key.first == vm) out.push_back(key.second);
  return out;
}

rdma::RegionStats DataPlane::region_stats(const std::string& vm, std::uint64_t lease) const {
  if (guests_ && guests_->serves(vm)) {
    // The VM's file as a whole: its leases share its counters.
    auto f = guests_->stats(vm);
    rdma::RegionStats r;
    r.state = f.lost_leases ? rdma::RegionState::failed
              : f.degraded_leases ? rdma::RegionState::degraded : rdma::RegionState::remote;
    r.error = f.error;
    r.bytes_read = f.bytes_fetched;
    r.bytes_written = f.bytes_written_back;
    r.mirror_bytes_read = f.mirror_bytes_read;
    r.mirror_bytes_written = f.mirror_bytes_written;
    r.failovers = f.failovers;
    r.rehomes = f.rehomes;
    r.mirror_failed = f.mirror_failed;
    r.fault_latency = f.read_latency;
    return r;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = regions_.find({vm, lease});
  return it == regions_.end() ? rdma::RegionStats{} : it->second->region->stats();
}

DataPathTotals DataPlane::totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  DataPathTotals t = ended_;
  for (const auto& [key, r] : regions_) {
    rdma::RegionStats s = r->region->stats();
    add_region(t, s);
    if (s.bytes_written > s.mirror_bytes_written) t.mirror_lag[key.first] += s.bytes_written - s.mirror_bytes_written;
  }
  return t;
}

bool DataPlane::touch_region(std::size_t n, const std::function<void(const Touch&)>& visit) {
  std::shared_ptr<Region> r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (regions_.empty()) return false;
    auto it = regions_.begin();
    std::advance(it, static_cast<std::ptrdiff_t>(n % regions_.size()));
    r = it->second;
  }
  std::lock_guard<std::mutex> touching(r->touch);
  visit(Touch{r->vm, r->origin, *r->region});
  return true;
}

}  // namespace memlend
