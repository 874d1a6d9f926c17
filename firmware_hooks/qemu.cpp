#include "firmware_hooks/qemu.hpp"

#include "core/text.hpp"
#include "firmware_hooks/host_proc.hpp"
#include "firmware_hooks/program.hpp"
#include "firmware_hooks/qmp.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace memlend::platform {

namespace {

using nlohmann::json;
using Millis = std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t mib = 1 << 20;
constexpr std::string_view suffix = ".qmp";
// A directory of thousands of sockets is no node's: the rest are not read.
constexpr std::size_t max_vms = 4096;

std::optional<std::uint64_t> unsigned_at(const json& object, const char* key) {
  if (!object.is_object()) return std::nullopt;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<std::uint64_t>();
}

std::int64_t to_mib(std::uint64_t bytes) { return static_cast<std::int64_t>(bytes / mib); }

// A guest statistic: QEMU shows one the guest never gave as -1, which its
// visitor writes as 2^64-1; anything past 2^63 is no count.
std::optional<std::uint64_t> stat(const json& stats, const char* key) {
  auto v = unsigned_at(stats, key);
  if (!v || *v >= (std::uint64_t{1} << 63)) return std::nullopt;
  return v;
}

// Why `uri` is no address this node migrates a VM to, or nothing. It comes
// from another node, and QEMU's "exec:" (or "fd:", "file:") would run a
// command or touch a file here: only tcp: and rdma: to HOST:PORT pass, HOST a
// name, an IPv4 address or a bracketed IPv6 one.
std::optional<std::string> migration_uri_problem(std::string_view uri) {
  if (uri.size() > 300) return std::string("longer than 300 bytes");
  std::string_view rest;
  for (std::string_view scheme : {"tcp:", "rdma:"})
    if (uri.substr(0, scheme.size()) == scheme) rest = uri.substr(scheme.size());
  if (rest.empty()) return std::string("not tcp:HOST:PORT or rdma:HOST:PORT");
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::string("no HOST:PORT");
  std::string_view host = rest.substr(0, colon), port = rest.substr(colon + 1);
  auto digit = [](unsigned char c) { return std::isdigit(c) != 0; };
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), digit) ||
      std::stoul(std::string(port)) == 0 || std::stoul(std::string(port)) > 65535)
    return std::string("no port 1-65535");
  bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  auto allowed = [&](unsigned char c) {
    return std::isalnum(c) != 0 || c == '.' || c == '-' || (bracketed && c == ':');
  };
  if (host.empty() || host.front() == '-' || !std::all_of(host.begin(), host.end(), allowed))
    return std::string("the host is no name or address");
  return std::nullopt;
}

// One VM's virtio-mem device, from query-memory-devices.
struct MemDevice {
  std::string id;
  std::uint64_t size = 0, requested = 0, max = 0, block = 0;
};

// The device named `want`, or the first virtio-mem device with an id.
Expected<MemDevice> find_mem_device(const json& devices, const std::string& want) {
  if (!devices.is_array()) return Error{"query-memory-devices returned no list", ErrorCode::invalid_input};
  for (const json& d : devices) {
    if (!d.is_object() || d.value("type", json()) != "virtio-mem") continue;
    const json& data = d.value("data", json());
    auto id = data.is_object() ? data.find("id") : json::const_iterator();
    if (!data.is_object() || id == data.end() || !id->is_string()) continue;
    if (!want.empty() && id->get<std::string>() != want) continue;
    auto size = unsigned_at(data, "size"), requested = unsigned_at(data, "requested-size");
    auto max = unsigned_at(data, "max-size"), block = unsigned_at(data, "block-size");
    if (!size || !requested || !max || !block || *block == 0)
      return Error{"virtio-mem '" + one_line(id->get<std::string>()) + "' lacks its sizes", ErrorCode::invalid_input};
    return MemDevice{id->get<std::string>(), *size, *requested, *max, *block};
  }
  return Error{want.empty() ? "no virtio-mem device with an id" : "no virtio-mem device '" + one_line(want) + "'",
               ErrorCode::refused};
}

// Connects to a VM's socket without waiting for a listener that will not take
// it (a socket file of a dead QEMU refuses at once; a full backlog says EAGAIN),
// and learns who QEMU is from the socket itself: no pid file to trust.
Expected<int> connect_socket(const std::string& path, pid_t* pid) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return Error{"socket path too long: " + one_line(path), ErrorCode::invalid_input};
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Error{std::string("socket: ") + std::strerror(errno), ErrorCode::io};
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    return Error{"connect: " + std::string(std::strerror(err)), ErrorCode::unavailable};
  }
  ucred cred{};
  socklen_t len = sizeof cred;
  *pid = ::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.pid : 0;
  return fd;
}

// std::erase_if, before C++20.
template <class Container, class Keep>
void erase_unless(Container& c, Keep keep) {
  for (auto it = c.begin(); it != c.end();) it = keep(*it) ? std::next(it) : c.erase(it);
}

struct Vm {
  std::string name;
  qmp::Client qmp;
  pid_t pid = 0;
  ino_t inode = 0;
  // The balloon's virtio device, whose guest-stats QEMU polls once told to.
  std::optional<std::string> balloon;
};

class QemuPlatform final : public NodePlatform {
 public:
  explicit QemuPlatform(QemuOptions o) : o_(std::move(o)) {
    if (!o_.log) o_.log = [](const std::string& m) { std::cerr << "memlend: qemu: " << m << '\n'; };
  }

  std::string_view backend() const override { return "qemu"; }

  Expected<NodeReading> read() override {
    std::lock_guard<std::mutex> lock(mu_);
    auto sockets = scan();
    if (!sockets) return sockets.error();
    // What was met at a socket that is gone, or is another QEMU's now, is forgotten.
    auto stays = [&](const std::string& name, ino_t inode) {
      auto found = sockets->find(name);
      return found != sockets->end() && found->second == inode;
    };
    erase_unless(vms_, [&](const auto& e) { return stays(e.first, e.second->inode); });
    erase_unless(resting_, [&](const auto& e) { return stays(e.first, e.second.first); });
    erase_unless(told_, [&](const std::string& name) { return sockets->count(name) > 0; });
    NodeReading r;
    auto now = Clock::now();
    for (const auto& [name, inode] : *sockets) {
      // A socket another client holds accepts and never greets: each try costs
      // connect_timeout, so the same socket is tried again only after a while.
      auto rest = resting_.find(name);
      if (rest != resting_.end() && now < rest->second.second) continue;
      Vm* vm = open(name, inode);
      if (!vm) {
        resting_[name] = {inode, now + o_.retry_interval};
        continue;
      }
      auto reading = read_vm(*vm);
      if (!reading) {
        // A QEMU that went away or stopped answering is met again when its
        // socket answers; one QEMU's refusal is no reason to drop its connection.
        tell(name, "VM '" + one_line(name) + "' left out of this reading: " + reading.error().message);
        if (reading.error().code != ErrorCode::refused) vms_.erase(name);
        continue;
      }
      told_.erase(name);
      r.vms.push_back(std::move(*reading));
    }
    auto host = host_proc::read_host(o_.host_name);
    if (!host) return host.error();
    r.host = std::move(*host);
    r.at = Clock::now();
    return r;
  }

  Expected<void> attach(const std::string& vm, const LentMemory& lent) override { return plug(vm, lent, +1); }
  Expected<void> detach(const std::string& vm, const LentMemory& lent) override { return plug(vm, lent, -1); }

  Expected<void> migrate(const std::string& name, const MigrationTarget& target) override {
    if (auto why = migration_uri_problem(target.address))
      return Error{"qemu: migrating VM '" + one_line(name) + "' to " + in_quotes(target.address) + ": " + *why,
                   ErrorCode::invalid_input};
    // The lock is held for one QMP exchange at a time, not for the whole
    // migration: the node's readings go on meanwhile (a silent node would be
    // taken for a dead one). Each step finds the VM again by its name.
    auto step = [&](const char* command, const json& args) -> Expected<json> {
      std::lock_guard<std::mutex> lock(mu_);
      auto vm = named(name);
      if (!vm) return vm.error();
      auto r = (*vm)->qmp.execute(command, args, o_.command_timeout);
      if (!r) return broken(name, r.error(), command);
      return r;
    };
    auto before = step("query-migrate", nullptr);
    if (!before) return before.error();
    if (is_active(*before)) return Error{"qemu: VM '" + one_line(name) + "' is migrating already", ErrorCode::refused};
    if (auto started = step("migrate", {{"uri", target.address}}); !started) return started.error();
    auto deadline = Clock::now() + o_.migrate_timeout;
    std::string why;
    for (;;) {
      auto status = step("query-migrate", nullptr);
      if (!status) return status.error();
      std::string s = text_at(*status, "status");
      if (s == "completed") {
        // As Proxmox and libvirt do: the VM runs at the target only, and its
        // old QEMU, paused for good, gives its memory back to this node.
        if (auto quit = step("quit", nullptr); !quit)
          tell("", "VM '" + one_line(name) + "' moved, but its QEMU here did not quit: " + quit.error().message);
        return {};
      }
      if (s == "failed" || s == "cancelled") {
        why = "QEMU says " + s + (status->contains("error-desc") ? ": " + text_at(*status, "error-desc") : "");
        break;
      }
      if (Clock::now() >= deadline) {
        why = "not done after " + std::to_string(o_.migrate_timeout.count() / 1000) + " s";
        break;
      }
      std::this_thread::sleep_for(Millis(200));
    }
    // Whatever the state, the VM must go on running here.
    (void)step("migrate_cancel", nullptr);
    for (auto until = Clock::now() + o_.command_timeout; Clock::now() < until;) {
      auto status = step("query-migrate", nullptr);
      if (!status || !is_active(*status)) break;
      std::this_thread::sleep_for(Millis(100));
    }
    return Error{"qemu: migrating VM '" + one_line(name) + "' to " + one_line(target.address) + ": " + why +
                     "; cancelled, it runs here",
                 ErrorCode::refused};
  }

  Expected<std::string> receive(const std::string& name) override {
    if (o_.incoming_program.empty()) return NodePlatform::receive(name);
    if (!plain_name(name)) return Error{"qemu: no VM may be named " + in_quotes(name), ErrorCode::invalid_input};
    {
      std::lock_guard<std::mutex> lock(mu_);
      struct stat st {};
      if (::lstat(path_of(name).c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && named(name))
        return Error{"qemu: VM '" + name + "' runs here already", ErrorCode::refused};
    }
    std::string what = "qemu: the incoming program " + in_quotes(o_.incoming_program);
    if (auto ok = check_trusted_program(what, o_.incoming_program); !ok) return ok.error();
    ProgramLimits limits;
    limits.timeout = o_.incoming_timeout;
    limits.max_output = 4096;
    auto done = run_program(o_.incoming_program, {name}, limits);
    if (!done) return Error{what + " for VM '" + name + "': " + done.error().message, done.error().code};
    std::string first = done->out.substr(0, done->out.find('\n'));
    if (!first.empty() && first.back() == '\r') first.pop_back();
    if (done->cut || done->signal || done->status != 0)
      return Error{what + " refused VM '" + name + "' (" +
                       (done->cut        ? std::string("it printed too much")
                        : done->signal ? "killed by signal " + std::to_string(done->signal)
                                       : "exit status " + std::to_string(done->status)) +
                       "): " + in_quotes(first.substr(0, 200)),
                   ErrorCode::refused};
    if (auto why = migration_uri_problem(first))
      return Error{what + " printed " + in_quotes(first.substr(0, 200)) + " for VM '" + name + "': " + *why,
                   ErrorCode::refused};
    return first;
  }

  void cancel_receive(const std::string& name) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto vm = named(name);
    if (!vm) return;
    auto status = (*vm)->qmp.execute("query-status", nullptr, o_.command_timeout);
    // Only a QEMU still waiting for the VM's state is stopped: a VM that runs
    // here is no migration's to undo.
    if (!status || text_at(*status, "status") != "inmigrate") return;
    (void)(*vm)->qmp.execute("quit", nullptr, o_.command_timeout);
    vms_.erase(name);
    tell("", "stopped the incoming QEMU of VM '" + one_line(name) + "': its migration did not happen");
  }

  Expected<void> set_balloon(const std::string& name, std::int64_t target_mib) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (target_mib <= 0 || static_cast<std::uint64_t>(target_mib) > (std::uint64_t{1} << 40))
      return Error{"qemu: a balloon target of " + std::to_string(target_mib) + " MiB", ErrorCode::invalid_input};
    auto vm = named(name);
    if (!vm) return vm.error();
    auto done = (*vm)->qmp.execute("balloon", {{"value", static_cast<std::uint64_t>(target_mib) * mib}},
                                   o_.command_timeout);
    if (!done) return broken(name, done.error(), "balloon");
    return {};
  }

 private:
  // The sockets in the directory: name → inode (a new QEMU makes a new one).
  Expected<std::map<std::string, ino_t>> scan() {
    DIR* dir = ::opendir(o_.qmp_dir.c_str());
    if (!dir) {
      int err = errno;
      return Error{"qemu: the QMP directory " + one_line(o_.qmp_dir) + ": " + std::strerror(err),
                   ErrorCode::unavailable};
    }
    std::map<std::string, ino_t> out;
    while (dirent* e = ::readdir(dir)) {
      std::string file = e->d_name;
      if (file.size() <= suffix.size() || file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      struct stat st {};
      if (::fstatat(::dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISSOCK(st.st_mode)) continue;
      if (out.size() >= max_vms) {
        tell("", "more than " + std::to_string(max_vms) + " sockets in " + one_line(o_.qmp_dir) + ": the rest ignored");
        break;
      }
      out.emplace(file.substr(0, file.size() - suffix.size()), st.st_ino);
    }
    ::closedir(dir);
    return out;
  }

  std::string path_of(const std::string& name) const { return o_.qmp_dir + "/" + name + std::string(suffix); }

  // The VM's connection, made now if there is none; nullptr (and told once)
  // when its socket does not answer.
  Vm* open(const std::string& name, ino_t inode) {
    auto it = vms_.find(name);
    if (it != vms_.end()) return it->second.get();
    auto vm = connect(name, inode);
    if (!vm) {
      tell(name, "VM '" + one_line(name) + "' skipped: " + vm.error().message);
      return nullptr;
    }
    told_.erase(name);
    resting_.erase(name);
    return vms_.emplace(name, std::move(*vm)).first->second.get();
  }

  Expected<std::unique_ptr<Vm>> connect(const std::string& name, ino_t inode) {
    pid_t pid = 0;
    auto fd = connect_socket(path_of(name), &pid);
    if (!fd) return fd.error();
    auto client = qmp::Client::over(*fd, o_.connect_timeout);
    if (!client) return client.error();
    auto vm = std::make_unique<Vm>(Vm{name, std::move(*client), pid, inode, std::nullopt});
    find_balloon(*vm);
    return vm;
  }

  // For attach, detach, migrate and set_balloon: the VM by its name, whether
  // or not a read met it yet.
  static bool plain_name(const std::string& name) {
    return !name.empty() && name.size() <= 255 && name != "." && name != ".." && name.front() != '-' &&
           std::none_of(name.begin(), name.end(), [](unsigned char c) { return c == '/' || c < 0x20 || c == 0x7f; });
  }

  Expected<Vm*> named(const std::string& name) {
    struct stat st {};
    if (!plain_name(name) || ::lstat(path_of(name).c_str(), &st) != 0 || !S_ISSOCK(st.st_mode))
      return Error{"qemu: no VM '" + one_line(name) + "' (no socket " + one_line(name) + ".qmp in " +
                       one_line(o_.qmp_dir) + ")",
                   ErrorCode::refused};
    auto it = vms_.find(name);
    if (it != vms_.end() && it->second->inode != st.st_ino) vms_.erase(it);
    if (Vm* vm = open(name, st.st_ino)) return vm;
    return Error{"qemu: VM '" + one_line(name) + "' does not answer on its QMP socket", ErrorCode::unavailable};
  }

  // An error of a command: a connection that broke or hung is dropped (the
  // next call connects again); the message says what was asked.
  Error broken(const std::string& name, const Error& e, const std::string& what) {
    if (e.code != ErrorCode::refused && e.code != ErrorCode::timed_out) vms_.erase(name);
    return Error{"qemu: VM '" + one_line(name) + "': " + one_line(what) + ": " + e.message, e.code};
  }

  // Said once per VM until it answers again: a dead socket file may stay for days.
  void tell(const std::string& name, const std::string& message) {
    if (!name.empty() && !told_.insert(name).second) return;
    o_.log(message);
  }

  // A string member, or "" (json's value() would throw on another type).
  static std::string text_at(const json& object, const char* key) {
    if (!object.is_object()) return "";
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? one_line(it->get<std::string>()) : std::string();
  }

  static bool is_active(const json& status) {
    static const std::set<std::string> done = {"", "none", "completed", "failed", "cancelled"};
    return done.count(text_at(status, "status")) == 0;
  }

  Expected<json> status_of(qmp::Client& q) {
    auto s = q.execute("query-migrate", nullptr, o_.command_timeout);
    if (!s) return s.error();
    if (!s->is_object()) return Error{"query-migrate returned no object", ErrorCode::invalid_input};
    return s;
  }

  // The balloon device's QOM path, where its guest-stats are; QEMU polls the
  // guest for them only once asked to, so that is asked here, once.
  void find_balloon(Vm& vm) {
    for (const char* dir : {"/machine/peripheral", "/machine/peripheral-anon"}) {
      auto children = vm.qmp.execute("qom-list", {{"path", dir}}, o_.command_timeout);
      if (!children || !children->is_array()) continue;
      for (const json& c : *children) {
        if (!c.is_object()) continue;
        std::string type = text_at(c, "type"), child = text_at(c, "name");
        if (type.rfind("child<virtio-balloon-pci", 0) != 0 || child.empty()) continue;
        std::string path = std::string(dir) + "/" + child + "/virtio-backend";
        auto set = vm.qmp.execute(
            "qom-set",
            {{"path", path}, {"property", "guest-stats-polling-interval"}, {"value", o_.stats_interval.count()}},
            o_.command_timeout);
        if (!set) {
          tell("", "VM '" + one_line(vm.name) + "': no balloon statistics: " + set.error().message);
          return;
        }
        vm.balloon = path;
        return;
      }
    }
  }

  Expected<VmReading> read_vm(Vm& vm) {
    qmp::Client& q = vm.qmp;
    VmReading r;
    r.name = vm.name;
    auto status = q.execute("query-status", nullptr, o_.command_timeout);
    if (!status) return status.error();
    if (!status->is_object() || !status->contains("running") || !(*status)["running"].is_boolean())
      return Error{"query-status returned no running state", ErrorCode::invalid_input};
    r.running = (*status)["running"].get<bool>();
    auto summary = q.execute("query-memory-size-summary", nullptr, o_.command_timeout);
    if (!summary) return summary.error();
    auto base = unsigned_at(*summary, "base-memory");
    if (!base) return Error{"query-memory-size-summary has no base-memory", ErrorCode::invalid_input};
    r.memory_mib = to_mib(*base);
    auto cpus = q.execute("query-cpus-fast", nullptr, o_.command_timeout);
    if (!cpus) return cpus.error();
    r.vcpus = cpus->is_array() ? static_cast<int>(std::min<std::size_t>(cpus->size(), 1 << 16)) : 0;

    auto devices = q.execute("query-memory-devices", nullptr, o_.command_timeout);
    if (!devices && devices.error().code != ErrorCode::refused) return devices.error();
    if (auto d = devices ? find_mem_device(*devices, o_.device_id) : Expected<MemDevice>(devices.error())) {
      r.plugged_mib = to_mib(d->size);
      r.pluggable_mib = to_mib(d->max);
    }
    // Without a balloon device QEMU refuses the query: the readings stay absent.
    auto balloon = q.execute("query-balloon", nullptr, o_.command_timeout);
    if (!balloon && balloon.error().code != ErrorCode::refused) return balloon.error();
    if (auto actual = balloon ? unsigned_at(*balloon, "actual") : std::nullopt) r.balloon_mib = to_mib(*actual);
    if (vm.balloon) {
      auto got = q.execute("qom-get", {{"path", *vm.balloon}, {"property", "guest-stats"}}, o_.command_timeout);
      if (!got && got.error().code != ErrorCode::refused) return got.error();
      // last-update 0: the guest's driver never sent any (none loaded yet).
      auto updated = got ? unsigned_at(*got, "last-update").value_or(0) : 0;
      if (updated > 0 && got->contains("stats")) {
        const json& s = (*got)["stats"];
        // last-update is QEMU's wall clock in whole seconds: the age is
        // rounded up, never under.
        auto now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
        r.guest_stats_age_s = std::max(0.0, now - static_cast<double>(updated));
        if (auto v = stat(s, "stat-available-memory")) r.guest_available_mib = to_mib(*v);
        if (auto v = stat(s, "stat-free-memory")) r.guest_free_mib = to_mib(*v);
        // Linux's driver gives swap as bytes; the reading counts 4 KiB pages.
        if (auto v = stat(s, "stat-swap-in")) r.swap_in = *v / 4096;
        if (auto v = stat(s, "stat-swap-out")) r.swap_out = *v / 4096;
        r.major_faults = stat(s, "stat-major-faults");
      }
    }
    if (vm.pid > 0) {
      if (auto p = host_proc::read_process(vm.pid)) {
        r.cpu_s = p->cpu_s;
        r.rss_mib = p->rss_mib;
        r.cpu_throttled_s = p->cpu_throttled_s;
      }
    }
    return r;
  }

  Expected<void> plug(const std::string& name, const LentMemory& lent, int sign) {
    std::lock_guard<std::mutex> lock(mu_);
    const char* what = sign > 0 ? "attach" : "detach";
    if (lent.mib <= 0 || static_cast<std::uint64_t>(lent.mib) > (std::uint64_t{1} << 30))
      return Error{std::string("qemu: ") + what + " of " + std::to_string(lent.mib) + " MiB", ErrorCode::invalid_input};
    auto vm = named(name);
    if (!vm) return vm.error();
    qmp::Client& q = (*vm)->qmp;
    auto devices = q.execute("query-memory-devices", nullptr, o_.command_timeout);
    if (!devices) return broken(name, devices.error(), what);
    auto d = find_mem_device(*devices, o_.device_id);
    if (!d) return broken(name, d.error(), what);
    std::uint64_t bytes = static_cast<std::uint64_t>(lent.mib) * mib;
    std::string device = "virtio-mem '" + one_line(d->id) + "'";
    if (bytes % d->block != 0)
      return Error{"qemu: VM '" + one_line(name) + "': " + std::to_string(lent.mib) + " MiB is no multiple of " +
                       device + "'s " + std::to_string(d->block / mib) + " MiB blocks",
                   ErrorCode::refused};
    if (sign > 0 ? d->requested + bytes > d->max : d->requested < bytes)
      return Error{"qemu: VM '" + one_line(name) + "': " + device + " has " + std::to_string(d->requested / mib) +
                       " MiB requested of " + std::to_string(d->max / mib) + ": cannot " + what + " " +
                       std::to_string(lent.mib) + " MiB",
                   ErrorCode::refused};
    std::uint64_t target = sign > 0 ? d->requested + bytes : d->requested - bytes;
    auto done = q.set_requested_size(d->id, target, o_.plug_timeout);
    if (done) return {};
    // The guest did not get there in time: asked back to where it was, so
    // the lease and the guest agree on what the VM holds.
    if (done.error().code == ErrorCode::timed_out)
      (void)q.execute("qom-set",
                      {{"path", "/machine/peripheral/" + d->id}, {"property", "requested-size"}, {"value", d->requested}},
                      o_.command_timeout);
    return broken(name, done.error(), std::string(what) + " " + std::to_string(lent.mib) + " MiB");
  }

  QemuOptions o_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Vm>> vms_;
  std::set<std::string> told_;
  // Sockets that did not answer: their inode, and when to try them again.
  std::map<std::string, std::pair<ino_t, Clock::time_point>> resting_;
};

}  // namespace

std::unique_ptr<NodePlatform> make_qemu(QemuOptions options) {
  return std::make_unique<QemuPlatform>(std::move(options));
}

}  // namespace memlend::platform
