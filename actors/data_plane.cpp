#include "actors/data_plane.hpp"

#include <chrono>
#include <cstring>
#include <vector>

namespace memlend {

namespace {

std::string to_hex(const rdma::Secret& s) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (auto b : s) {
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::optional<rdma::Secret> from_hex(const std::string& hex) {
  rdma::Secret s{};
  if (hex.size() != s.size() * 2) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    s[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return s;
}

Expected<rdma::LeaseAccess> access_of(const DataLease& d, std::uint64_t bytes) {
  auto secret = from_hex(d.secret_hex);
  if (!secret) return Error{"lease " + std::to_string(d.id) + " at " + d.addr + ": no usable secret"};
  rdma::LeaseAccess a;
  a.donor = d.addr;
  a.lease_id = d.id;
  a.epoch = d.epoch;
  a.bytes = bytes;
  a.secret = *secret;
  return a;
}

// The guest's pattern: every 8 bytes name the VM's lease, the round and the
// offset, so a byte in the wrong place, from another lease or from an older
// round is caught.
std::uint64_t word(std::uint64_t lease, std::uint64_t generation, std::uint64_t offset) {
  std::uint64_t x = lease * 0x9e3779b97f4a7c15ULL ^ (generation + 1) * 0xc2b2ae3d27d4eb4fULL ^ offset;
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  return x ^ (x >> 29);
}

void add_region(DataPathTotals& t, const rdma::RegionStats& s) {
  t.faults += s.faults + s.write_faults;
  t.bytes_read += s.bytes_read;
  t.bytes_written += s.bytes_written;
  t.fault_latency.merge(s.fault_latency);
}

// The guest touches this much at a time, then lets the others have a turn.
constexpr std::uint64_t step_bytes = 256 * 1024;

}  // namespace

DataPlane::DataPlane(DataPlaneOptions options) : options_(std::move(options)) {
  worker_ = std::thread([this] { worker_loop(); });
  if (options_.guest) guest_ = std::thread([this] { guest_loop(); });
}

DataPlane::~DataPlane() {
  drain();
  stopping_ = true;
  jobs_cv_.notify_all();
  worker_.join();
  if (guest_.joinable()) guest_.join();
  // Regions first: their threads may still talk to the servers below.
  std::map<std::pair<std::string, std::uint64_t>, std::shared_ptr<Region>> regions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    regions.swap(regions_);
  }
  for (auto& [key, r] : regions) {
    std::lock_guard<std::mutex> touch(r->touch);
    r->region->detach();
  }
  regions.clear();
  for (auto& [host, d] : donors_)
    if (d.server) d.server->stop();
}

void DataPlane::post(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    jobs_.push_back(std::move(job));
  }
  jobs_cv_.notify_one();
}

void DataPlane::drain() {
  std::unique_lock<std::mutex> lock(jobs_mu_);
  idle_cv_.wait(lock, [this] { return jobs_.empty() && running_ == 0; });
}

void DataPlane::worker_loop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(jobs_mu_);
      jobs_cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      ++running_;
    }
    job();
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

Expected<DataLease> DataPlane::grant(const std::string& donor_host, const std::string& addr, std::int64_t mib) {
  auto key = pool_secret(donor_host);
  if (!key) return Error{"no pool secret for " + donor_host + ": its agent has not joined"};
  auto client = rdma::DonorClient::connect(addr, *key, options_.timeouts);
  if (!client) return Error{"cannot reach " + donor_host + "'s data path at " + addr + ": " + client.error().message};
  auto access = (*client)->grant(bytes(mib));
  if (!access) return Error{donor_host + " refused a lease: " + access.error().message};
  return DataLease{access->donor, access->lease_id, access->epoch, to_hex(access->secret)};
}

void DataPlane::release(const std::string& donor_host, const DataLease& lease) {
  // The store keeps no secret: after a restart the lease's is derived again.
  DataLease known = lease;
  if (known.secret_hex.empty()) known.secret_hex = lease_secret_hex(donor_host, lease.id, lease.epoch);
  auto a = access_of(known, 0);
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
    if (on_region_event) on_region_event(vm, lease, e);
  };
  return c;
}

rdma::Status DataPlane::attach(const std::string& vm, std::uint64_t lease, std::int64_t mib, const DataLease& access) {
  auto a = access_of(access, bytes(mib));
  if (!a) return Error{a.error().message};
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
                               const DataLease& access) {
  std::shared_ptr<Region> r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = regions_.find({vm, old_lease});
    if (it == regions_.end()) return Error{"no region for lease " + std::to_string(old_lease)};
    r = it->second;
  }
  auto a = access_of(access, r->region->size());
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
  std::lock_guard<std::mutex> lock(mu_);
  return regions_.count({vm, lease}) > 0;
}

std::vector<std::uint64_t> DataPlane::regions_of(const std::string& vm) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::uint64_t> out;
  for (const auto& [key, r] : regions_)
    if (key.first == vm) out.push_back(key.second);
  return out;
}

GuestStats DataPlane::guest(const std::string& vm) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = guests_.find(vm);
  return it == guests_.end() ? GuestStats{} : it->second;
}

rdma::RegionStats DataPlane::region_stats(const std::string& vm, std::uint64_t lease) const {
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

// The guest: round after round, writes its pattern over each region and then
// reads it all back, a step at a time, so that blocks are evicted, written
// back to donor and mirror, and fetched again. A mismatch is memory lost.
void DataPlane::guest_loop() {
  std::size_t next = 0;
  while (!stopping_) {
    std::shared_ptr<Region> r;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!regions_.empty()) {
        auto it = regions_.begin();
        std::advance(it, static_cast<std::ptrdiff_t>(next++ % regions_.size()));
        r = it->second;
      }
    }
    if (!r) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    std::uint64_t written = 0, verified = 0, bad = 0;
    bool round_done = false;
    {
      std::lock_guard<std::mutex> touch(r->touch);
      if (r->region->state() == rdma::RegionState::detached) continue;
      auto* base = static_cast<std::uint64_t*>(r->region->data());
      std::uint64_t size = r->region->size() / 8 * 8;
      std::uint64_t end = std::min(size, r->cursor + step_bytes);
      for (std::uint64_t off = r->cursor; off < end; off += 8) {
        std::uint64_t want = word(r->origin, r->generation, off);
        if (!r->verifying) {
          base[off / 8] = want;
        } else if (base[off / 8] != want) {
          ++bad;
        }
      }
      (r->verifying ? verified : written) += end - r->cursor;
      r->cursor = end;
      if (r->cursor >= size) {
        r->cursor = 0;
        if (r->verifying) {
          ++r->generation;
          round_done = true;
        }
        r->verifying = !r->verifying;
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto& g = guests_[r->vm];
      g.bytes_written += written;
      g.bytes_verified += verified;
      g.mismatches += bad;
      if (round_done) ++g.passes;
    }
    // A guest, not a benchmark: leave the CPU to the rest.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace memlend
