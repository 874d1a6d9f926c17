#include "dataplane/guest_memory.hpp"

#include "firmware_hooks/qmp.hpp"

#include <filesystem>

namespace memlend {

namespace {

constexpr std::uint64_t mib = 1 << 20;

// The virtio-mem device whose memdev maps `file`, and its block size.
struct Device {
  std::string id;
  std::uint64_t block = 2 * mib;
};

Expected<Device> find_device(qmp::Client& c, const std::string& file, const std::string& wanted,
                             std::chrono::milliseconds timeout) {
  auto devices = c.execute("query-memory-devices", nullptr, timeout);
  if (!devices) return devices.error();
  if (!devices->is_array()) return Error{"query-memory-devices did not return a list"};
  for (const auto& d : *devices) {
    if (!d.is_object() || d.value("type", "") != "virtio-mem") continue;
    const auto& data = d.value("data", nlohmann::json::object());
    if (!data.is_object()) continue;
    std::string id = data.value("id", "");
    Device dev{id, data.value("block-size", std::uint64_t{2 * mib})};
    if (dev.block == 0) dev.block = 2 * mib;
    if (!wanted.empty()) {
      if (id == wanted) return dev;
      continue;
    }
    std::string memdev = data.value("memdev", "");
    if (memdev.empty()) continue;
    auto path = c.execute("qom-get", {{"path", memdev}, {"property", "mem-path"}}, timeout);
    if (path && path->is_string() && path->get<std::string>() == file) return dev;
  }
  if (!wanted.empty()) return Error{"QEMU has no virtio-mem device " + wanted};
  return Error{"QEMU has no virtio-mem device whose memory is " + file};
}

}  // namespace

Expected<std::pair<std::string, QemuGuestConfig>> parse_qemu_vm(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return Error{"--qemu-vm \"" + text + "\": " + why + " (NAME,qmp=SOCKET,max-mib=MIB[,device=ID])",
                 ErrorCode::invalid_input};
  };
  std::vector<std::string> parts;
  for (std::size_t at = 0;;) {
    auto comma = text.find(',', at);
    parts.push_back(text.substr(at, comma == std::string::npos ? std::string::npos : comma - at));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  std::string name = parts[0];
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == ".." || name.size() > 200)
    return bad("no usable VM name");
  QemuGuestConfig c;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    auto eq = parts[i].find('=');
    if (eq == std::string::npos) return bad("\"" + parts[i] + "\" is not KEY=VALUE");
    std::string key = parts[i].substr(0, eq), value = parts[i].substr(eq + 1);
    if (key == "qmp") {
      c.qmp = value;
    } else if (key == "device") {
      c.device = value;
    } else if (key == "max-mib") {
      if (value.empty() || value.size() > 8 || value.find_first_not_of("0123456789") != std::string::npos)
        return bad("max-mib must be a whole number of MiB");
      c.max_bytes = std::stoull(value) * mib;
    } else {
      return bad("unknown key \"" + key + "\"");
    }
  }
  if (c.qmp.empty()) return bad("no qmp=SOCKET");
  if (c.max_bytes == 0) return bad("no max-mib=MIB");
  return std::make_pair(name, c);
}

GuestMemory::GuestMemory(GuestMemoryOptions options, std::unique_ptr<memfs::MemoryFs> fs)
    : options_(std::move(options)), fs_(std::move(fs)) {}

GuestMemory::~GuestMemory() { stop(); }

Expected<std::unique_ptr<GuestMemory>> GuestMemory::start(const GuestMemoryOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return Error{"memory directory " + options.dir + ": " + ec.message()};
  memfs::MountOptions mo;
  mo.mountpoint = options.dir;
  mo.log = options.log;
  auto fs = memfs::MemoryFs::mount(mo);
  if (!fs) return Error{"memory directory " + options.dir + ": " + fs.error().message};
  std::unique_ptr<GuestMemory> g(new GuestMemory(options, std::move(*fs)));
  for (const auto& [name, config] : options.vms) {
    if (config.max_bytes % options.block_bytes != 0)
      return Error{"VM " + name + ": its most, " + std::to_string(config.max_bytes / mib) +
                   " MiB, is not a whole number of blocks", ErrorCode::invalid_input};
    rdma::MemoryFileConfig fc;
    fc.bytes = config.max_bytes;
    fc.block_bytes = options.block_bytes;
    fc.transport = options.transport;
    fc.timeouts = options.timeouts;
    if (!options.datastore.empty()) {
      auto m = rdma::MirrorFile::open(options.datastore, name, config.max_bytes);
      if (!m) return Error{"mirror of " + name + ": " + m.error().message};
      fc.mirror = *m;
    }
    if (options.on_event)
      fc.on_event = [cb = options.on_event, name = name](std::uint64_t lease, const rdma::RegionEvent& e) {
        cb(name, lease, e);
      };
    auto file = rdma::MemoryFile::create(fc);
    if (!file) return Error{"memory file of " + name + ": " + file.error().message};
    std::shared_ptr<rdma::MemoryFile> shared = std::move(*file);
    if (auto s = g->fs_->add_file(name, shared); !s) return s.error();
    g->vms_[name] = Vm{config, shared, {}, {}, 0, {}};
  }
  return g;
}

void GuestMemory::stop() {
  if (fs_) fs_->stop();
}

bool GuestMemory::serves(const std::string& vm) const { return find(vm) != nullptr; }
std::string GuestMemory::path_of(const std::string& vm) const { return fs_->path_of(vm); }

GuestMemory::Vm* GuestMemory::find(const std::string& vm) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = vms_.find(vm);
  return it == vms_.end() ? nullptr : &it->second;
}
const GuestMemory::Vm* GuestMemory::find(const std::string& vm) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = vms_.find(vm);
  return it == vms_.end() ? nullptr : &it->second;
}

// The device's requested size: what is lent, in whole device blocks, at most
// the file. Waits for the guest's driver to get there.
rdma::Status GuestMemory::plug(const std::string& name, Vm& vm, std::uint64_t bytes) {
  auto c = qmp::Client::connect(vm.config.qmp, options_.plug_timeout);
  if (!c) return Error{name + "'s QEMU: " + c.error().message};
  auto dev = find_device(*c, path_of(name), vm.config.device, options_.plug_timeout);
  if (!dev) return Error{name + "'s QEMU: " + dev.error().message};
  std::uint64_t want = std::min(bytes, vm.config.max_bytes) / dev->block * dev->block;
  if (auto s = c->set_requested_size(dev->id, want, options_.plug_timeout); !s)
    return Error{name + ": plugging " + std::to_string(want / mib) + " MiB: " + s.error().message};
  vm.requested = want;
  vm.device = dev->id;
  if (options_.log) options_.log(name + ": " + std::to_string(want / mib) + " MiB of lent memory plugged");
  return rdma::ok();
}

rdma::Status GuestMemory::attach(const std::string& vm, std::uint64_t lease, const rdma::LeaseTarget& target) {
  Vm* v = find(vm);
  if (!v) return Error{vm + " has no memory file"};
  if (auto s = v->file->add_lease(lease, target); !s) return Error{vm + ": " + s.error().message};
  std::uint64_t total = target.bytes;
  for (auto& [id, bytes] : v->lent) total += bytes;
  if (auto s = plug(vm, *v, total); !s) {
    // Nothing plugged, nothing placed: the lease goes back whole.
    (void)v->file->remove_lease(lease);
    return s;
  }
  std::lock_guard<std::mutex> lock(mu_);
  v->lent[lease] = target.bytes;
  return rdma::ok();
}

rdma::Status GuestMemory::detach(const std::string& vm, std::uint64_t lease) {
  Vm* v = find(vm);
  if (!v) return Error{vm + " has no memory file"};
  std::uint64_t total = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, bytes] : v->lent)
      if (id != lease) total += bytes;
    // The lease ends all the same (DataPlane::detach): the next plug or
    // unplug must not count it, or the device would never shrink below it.
    v->lent.erase(lease);
    v->leaving.insert(lease);
  }
  // The guest gives the memory back before the lease goes: unplugged, QEMU
  // punches it, and what the guest kept moves onto the other leases.
  rdma::Status result = plug(vm, *v, total);
  if (!result && options_.log) options_.log(vm + ": unplugging lease " + std::to_string(lease) + ": " + result.error().message);
  std::set<std::uint64_t> leaving;
  {
    std::lock_guard<std::mutex> lock(mu_);
    leaving = v->leaving;
  }
  for (std::uint64_t id : leaving) {
    auto s = v->file->remove_lease(id);
    // Not in the file any more (removed, or never placed) is gone as well.
    if (s || s.error().code == ErrorCode::invalid_input) {
      std::lock_guard<std::mutex> lock(mu_);
      v->leaving.erase(id);
      continue;
    }
    if (options_.log) options_.log(vm + ": lease " + std::to_string(id) + " stays in its file for now: " + s.error().message);
    if (id == lease && result) result = Error{vm + ": " + s.error().message};
  }
  return result;
}

void GuestMemory::fail_over(const std::string& vm, std::uint64_t lease, const std::string& why) {
  if (Vm* v = find(vm)) v->file->fail_over(lease, why);
}

rdma::Status GuestMemory::rehome(const std::string& vm, std::uint64_t old_lease, std::uint64_t lease,
                                 const rdma::LeaseTarget& target) {
  Vm* v = find(vm);
  if (!v) return Error{vm + " has no memory file"};
  rdma::LeaseTarget sized = target;
  std::uint64_t bytes = target.bytes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = v->lent.find(old_lease);
    if (it != v->lent.end() && bytes == 0) bytes = sized.bytes = it->second;
  }
  if (auto s = v->file->rehome(old_lease, lease, sized); !s) return s;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = v->lent.find(old_lease);
  if (it != v->lent.end()) v->lent.erase(it);
  v->lent[lease] = bytes;
  return rdma::ok();
}

std::vector<std::uint64_t> GuestMemory::leases_of(const std::string& vm) const {
  const Vm* v = find(vm);
  return v ? v->file->lease_ids() : std::vector<std::uint64_t>{};
}

rdma::MemoryFileStats GuestMemory::stats(const std::string& vm) const {
  const Vm* v = find(vm);
  return v ? v->file->stats() : rdma::MemoryFileStats{};
}

std::uint64_t GuestMemory::requested(const std::string& vm) const {
  const Vm* v = find(vm);
  std::lock_guard<std::mutex> lock(mu_);
  return v ? v->requested : 0;
}

}  // namespace memlend
