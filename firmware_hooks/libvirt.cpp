#include "firmware_hooks/libvirt.hpp"

#include "core/text.hpp"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

namespace memlend::platform {

namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;

// ---- libvirt's errors, as values ----

// libvirt's default handler prints every error to stderr; memlend returns them.
void keep_quiet(void*, virErrorPtr) {}

// Once per process, before the first connection: libvirt's event loop must be
// registered before a connection is opened for keepalive to run on it, and,
// once registered, be run for as long as the process lives.
void init_libvirt() {
  static std::once_flag once;
  std::call_once(once, [] {
    virSetErrorFunc(nullptr, keep_quiet);
    virInitialize();
    xmlInitParser();
    if (virEventRegisterDefaultImpl() != 0) return;
    std::thread([] {
      for (;;)
        // A failing loop would spin: it only fails on a broken poll, so it
        // is retried slowly rather than given up (keepalive depends on it).
        if (virEventRunDefaultImpl() < 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }).detach();
  });
}

// libvirt's last error on this thread, taken before any other libvirt call
// resets it.
struct Failure {
  int code = VIR_ERR_OK;
  std::string message;
};

Failure last_failure() {
  Failure f;
  if (virErrorPtr e = virGetLastError()) f.code = e->code;
  f.message = one_line(virGetLastErrorMessage());
  return f;
}

// What the caller can do about a failed call: a dead connection is the
// daemon's absence, a job that could not start in time a timeout, the rest is
// libvirt's (or the hypervisor's) refusal, or `otherwise`.
Error failed(virConnectPtr conn, const std::string& what, ErrorCode otherwise = ErrorCode::refused) {
  Failure f = last_failure();
  ErrorCode code = otherwise;
  if (f.code == VIR_ERR_OPERATION_TIMEOUT || f.code == VIR_ERR_AGENT_UNRESPONSIVE)
    code = ErrorCode::timed_out;
  else if (!conn || virConnectIsAlive(conn) == 0)
    code = ErrorCode::unavailable;
  return Error{"libvirt: " + what + ": " + f.message, code};
}

struct DomainFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using Domain = std::unique_ptr<virDomain, DomainFree>;

struct CharFree {
  void operator()(char* s) const { std::free(s); }
};
using CString = std::unique_ptr<char, CharFree>;

std::string quoted(const std::string& name) { return "'" + one_line(name) + "'"; }

// Why `uri` is no libvirt URI this node migrates a VM to, or nothing. It
// comes from another node: libvirt's ext transport, and the ssh transport's
// command, socket and keyfile parameters, would run or read what that node
// chose here, so only qemu over tls, tcp or ssh to a host, with no query, pass.
std::optional<std::string> migration_uri_problem(const std::string& uri) {
  if (uri.size() > 300) return std::string("longer than 300 bytes");
  for (const char* scheme : {"qemu://", "qemu+tls://", "qemu+tcp://", "qemu+ssh://"}) {
    std::string_view prefix(scheme);
    if (uri.compare(0, prefix.size(), prefix) != 0) continue;
    std::string_view rest = std::string_view(uri).substr(prefix.size());
    auto allowed = [](unsigned char c) {
      return std::isalnum(c) != 0 || std::string_view(".-_/:@[]").find(static_cast<char>(c)) != std::string_view::npos;
    };
    if (rest.empty() || rest.front() == '/' || !std::all_of(rest.begin(), rest.end(), allowed))
      return std::string("not HOST[:PORT]/PATH with no query");
    return std::nullopt;
  }
  return std::string("not a qemu://, qemu+tls://, qemu+tcp:// or qemu+ssh:// URI");
}

// ---- the domain's XML (libxml2) ----

struct DocFree {
  void operator()(xmlDocPtr d) const { xmlFreeDoc(d); }
};
using Doc = std::unique_ptr<xmlDoc, DocFree>;

Error not_domain(const std::string& why) { return Error{"libvirt: domain XML: " + why, ErrorCode::invalid_input}; }

// No network, no entity substitution, no DTD: the XML says what it says, and
// libxml2's own limits (no XML_PARSE_HUGE) bound its depth. libvirt never
// writes a DOCTYPE; one is refused, since the entities it may declare would be
// expanded, without bound, when an element's text is read.
Expected<Doc> parse_xml(const std::string& xml, std::size_t max_bytes) {
  if (xml.size() > max_bytes || xml.size() > static_cast<std::size_t>(INT_MAX))
    return not_domain(std::to_string(xml.size()) + " bytes, over the limit of " + std::to_string(max_bytes));
  Doc doc(xmlReadMemory(xml.data(), static_cast<int>(xml.size()), nullptr, nullptr,
                        XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (!doc) return not_domain("not well-formed XML");
  if (doc->intSubset || doc->extSubset) return not_domain("a DOCTYPE, which libvirt never writes");
  xmlNodePtr root = xmlDocGetRootElement(doc.get());
  if (!root || !xmlStrEqual(root->name, BAD_CAST "domain")) return not_domain("the root is not <domain>");
  return doc;
}

bool is_element(xmlNodePtr n, const char* name) {
  return n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name);
}

xmlNodePtr child(xmlNodePtr parent, const char* name) {
  for (xmlNodePtr n = parent ? parent->children : nullptr; n; n = n->next)
    if (is_element(n, name)) return n;
  return nullptr;
}

std::string attribute(xmlNodePtr n, const char* name) {
  xmlChar* v = xmlGetProp(n, BAD_CAST name);
  if (!v) return {};
  std::string out(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return out;
}

std::string content(xmlNodePtr n) {
  xmlChar* v = xmlNodeGetContent(n);
  if (!v) return {};
  std::string out(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return out;
}

// libvirt's units: a bare letter or an IEC name is a power of 1024, an SI
// name (KB, MB, ...) a power of 1000; no unit is KiB.
std::optional<std::uint64_t> unit_scale(std::string unit) {
  std::transform(unit.begin(), unit.end(), unit.begin(), [](unsigned char c) { return std::tolower(c); });
  if (unit.empty()) return KiB;
  if (unit == "b" || unit == "bytes") return 1;
  static const std::string prefixes = "kmgtpe";
  auto p = prefixes.find(unit[0]);
  if (p == std::string::npos) return std::nullopt;
  std::uint64_t base;
  if (unit.size() == 1 || unit.substr(1) == "ib")
    base = 1024;
  else if (unit.substr(1) == "b")
    base = 1000;
  else
    return std::nullopt;
  std::uint64_t scale = 1;
  for (std::size_t i = 0; i <= p; ++i) scale *= base;
  return scale;
}

Expected<std::uint64_t> size_in(xmlNodePtr n, const char* what) {
  std::string text = content(n);
  auto first = text.find_first_not_of(" \t\r\n");
  auto last = text.find_last_not_of(" \t\r\n");
  std::string_view digits = first == std::string::npos
                                ? std::string_view()
                                : std::string_view(text).substr(first, last - first + 1);
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size())
    return not_domain(std::string("<") + what + "> is not a size: '" + one_line(text.substr(0, 40)) + "'");
  std::string unit = attribute(n, "unit");
  auto scale = unit_scale(unit);
  if (!scale) return not_domain(std::string("<") + what + "> has an unknown unit '" + one_line(unit.substr(0, 20)) + "'");
  if (value > UINT64_MAX / *scale) return not_domain(std::string("<") + what + "> overflows");
  return value * *scale;
}

// The domain's virtio-mem devices, in document order.
std::vector<xmlNodePtr> virtio_mem_nodes(xmlDocPtr doc) {
  std::vector<xmlNodePtr> out;
  xmlNodePtr devices = child(xmlDocGetRootElement(doc), "devices");
  for (xmlNodePtr n = devices ? devices->children : nullptr; n; n = n->next)
    if (is_element(n, "memory") && attribute(n, "model") == "virtio-mem") out.push_back(n);
  return out;
}

Expected<VirtioMem> virtio_mem_of(xmlNodePtr device) {
  VirtioMem m;
  xmlNodePtr target = child(device, "target");
  if (!target) return not_domain("a virtio-mem device without <target>");
  struct Field {
    const char* name;
    std::uint64_t* into;
    bool required;
  };
  for (Field f : {Field{"size", &m.size, true}, Field{"block", &m.block, false},
                  Field{"requested", &m.requested, false}, Field{"current", &m.current, false}}) {
    xmlNodePtr n = child(target, f.name);
    if (!n) {
      if (f.required) return not_domain(std::string("a virtio-mem device without <") + f.name + ">");
      continue;
    }
    auto v = size_in(n, f.name);
    if (!v) return v.error();
    *f.into = *v;
  }
  return m;
}

}  // namespace

Expected<DomainXml> parse_domain_xml(const std::string& xml, std::size_t max_bytes) {
  auto doc = parse_xml(xml, max_bytes);
  if (!doc) return doc.error();
  DomainXml out;
  for (xmlNodePtr n : virtio_mem_nodes(doc->get())) {
    auto m = virtio_mem_of(n);
    if (!m) return m.error();
    out.virtio_mem.push_back(*m);
  }
  xmlNodePtr balloon = child(child(xmlDocGetRootElement(doc->get()), "devices"), "memballoon");
  out.balloon = balloon && attribute(balloon, "model") != "none";
  return out;
}

Expected<std::string> virtio_mem_update_xml(const std::string& xml, std::size_t index, std::uint64_t requested,
                                            std::size_t max_bytes) {
  auto doc = parse_xml(xml, max_bytes);
  if (!doc) return doc.error();
  auto devices = virtio_mem_nodes(doc->get());
  if (index >= devices.size()) return not_domain("no virtio-mem device #" + std::to_string(index));
  if (requested % KiB != 0) return not_domain("a requested size that is not whole KiB");
  xmlNodePtr target = child(devices[index], "target");
  if (!target) return not_domain("a virtio-mem device without <target>");
  xmlNodePtr node = child(target, "requested");
  if (!node) node = xmlNewChild(target, nullptr, BAD_CAST "requested", nullptr);
  if (!node) return Error{"libvirt: domain XML: out of memory", ErrorCode::failed};
  std::string kib = std::to_string(requested / KiB);
  xmlNodeSetContent(node, BAD_CAST kib.c_str());
  xmlSetProp(node, BAD_CAST "unit", BAD_CAST "KiB");
  xmlBufferPtr buffer = xmlBufferCreate();
  if (!buffer) return Error{"libvirt: domain XML: out of memory", ErrorCode::failed};
  int n = xmlNodeDump(buffer, doc->get(), devices[index], 0, 0);
  std::string out = n < 0 ? std::string() : std::string(reinterpret_cast<const char*>(xmlBufferContent(buffer)),
                                                        static_cast<std::size_t>(xmlBufferLength(buffer)));
  xmlBufferFree(buffer);
  if (out.empty()) return Error{"libvirt: domain XML: the device could not be written out", ErrorCode::failed};
  return out;
}

namespace {

std::int64_t mib_of_kib(std::uint64_t kib) { return static_cast<std::int64_t>(kib / KiB); }
std::int64_t mib_of_bytes(std::uint64_t bytes) { return static_cast<std::int64_t>(bytes / MiB); }

// A VM whose VMM process exists, and so holds memory, whatever its guest does.
bool has_process(int state) {
  return state != VIR_DOMAIN_NOSTATE && state != VIR_DOMAIN_SHUTOFF && state != VIR_DOMAIN_CRASHED;
}

class Libvirt final : public NodePlatform {
 public:
  explicit Libvirt(LibvirtOptions options) : options_(std::move(options)) {}
  ~Libvirt() override {
    if (conn_) virConnectClose(conn_);
  }
  Libvirt(const Libvirt&) = delete;
  Libvirt& operator=(const Libvirt&) = delete;

  std::string_view backend() const override { return "libvirt"; }

  Expected<void> open() {
    virResetLastError();
    conn_ = virConnectOpen(options_.uri.c_str());
    if (!conn_) {
      Failure f = last_failure();
      return Error{"libvirt: cannot connect to " + quoted(options_.uri) + ": " + f.message, ErrorCode::unavailable};
    }
    // Only a connection to a daemon has keepalive; an in-process driver (test:///)
    // says it does not support it, and has nothing to wait for.
    if (virConnectSetKeepAlive(conn_, static_cast<int>(options_.keepalive_interval.count()),
                               options_.keepalive_count) < 0 &&
        virConnectIsAlive(conn_) != 1) {
      virConnectClose(std::exchange(conn_, nullptr));
      return Error{"libvirt: the connection to " + quoted(options_.uri) + " died at once", ErrorCode::unavailable};
    }
    return {};
  }

  Expected<NodeReading> read() override {
    auto c = connection();
    if (!c) return c.error();
    NodeReading r;
    r.at = std::chrono::steady_clock::now();
    auto host = read_host();
    if (!host) return host.error();
    r.host = std::move(*host);
    virDomainPtr* list = nullptr;
    int n = virConnectListAllDomains(conn_, &list, 0);
    if (n < 0) return failed(conn_, "list the VMs", ErrorCode::failed);
    std::vector<Domain> domains;
    for (int i = 0; i < n; ++i) domains.emplace_back(list[i]);
    std::free(list);
    runs_seen_.clear();
    for (auto& d : domains) {
      auto vm = read_vm(d.get());
      if (vm)
        r.vms.push_back(std::move(*vm));
      else if (options_.warn)
        options_.warn(vm.error().message);
    }
    std::sort(r.vms.begin(), r.vms.end(), [](const VmReading& a, const VmReading& b) { return a.name < b.name; });
    // Runs that ended are forgotten, or a long-lived agent would keep them all.
    for (auto it = stats_period_set_.begin(); it != stats_period_set_.end();)
      it = runs_seen_.count(*it) ? std::next(it) : stats_period_set_.erase(it);
    return r;
  }

  Expected<void> attach(const std::string& vm, const LentMemory& lent) override { return plug(vm, lent, +1); }
  Expected<void> detach(const std::string& vm, const LentMemory& lent) override { return plug(vm, lent, -1); }

  Expected<void> migrate(const std::string& vm, const MigrationTarget& target) override {
    if (target.address.empty())
      return Error{"libvirt: migrate " + quoted(vm) + ": no libvirt URI for host " + quoted(target.host),
                   ErrorCode::invalid_input};
    if (auto why = migration_uri_problem(target.address))
      return Error{"libvirt: migrate " + quoted(vm) + " to " + quoted(target.address) + ": " + *why,
                   ErrorCode::invalid_input};
    auto d = domain(vm);
    if (!d) return d.error();
    std::mutex m;
    std::condition_variable cv;
    bool done = false, aborted = false;
    // libvirt has no deadline for a migration: one that outlasts the timeout
    // is cancelled from a second thread, over the same connection.
    std::thread watchdog([&] {
      std::unique_lock<std::mutex> lock(m);
      if (cv.wait_for(lock, options_.migration_timeout, [&] { return done; })) return;
      aborted = true;
      lock.unlock();
      virDomainAbortJob(d->get());
    });
    int rc = virDomainMigrateToURI3(d->get(), target.address.c_str(), nullptr, 0,
                                    VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER);
    Error error = rc < 0 ? failed(conn_, "migrate " + quoted(vm) + " to " + quoted(target.address)) : Error{};
    {
      std::lock_guard<std::mutex> lock(m);
      done = true;
    }
    cv.notify_one();
    watchdog.join();
    if (rc == 0) return {};
    if (aborted) {
      error.message = "libvirt: migrate " + quoted(vm) + ": not done within " +
                      std::to_string(options_.migration_timeout.count()) + " s, cancelled (" + error.message + ")";
      error.code = ErrorCode::timed_out;
    }
    return error;
  }

  Expected<std::string> receive(const std::string& vm) override {
    if (options_.migrate_uri.empty()) return NodePlatform::receive(vm);
    return options_.migrate_uri;
  }

  Expected<void> set_balloon(const std::string& vm, std::int64_t mib) override {
    if (mib <= 0 || static_cast<std::uint64_t>(mib) > ULONG_MAX / KiB)
      return Error{"libvirt: balloon of " + quoted(vm) + ": " + std::to_string(mib) + " MiB is not a size",
                   ErrorCode::invalid_input};
    auto d = domain(vm);
    if (!d) return d.error();
    auto xml = domain_xml(d->get(), vm);
    if (!xml) return xml.error();
    if (!xml->balloon) return Error{"libvirt: VM " + quoted(vm) + " has no balloon device", ErrorCode::refused};
    if (virDomainSetMemoryFlags(d->get(), static_cast<unsigned long>(mib) * KiB, VIR_DOMAIN_AFFECT_LIVE) < 0)
      return failed(conn_, "set the balloon of " + quoted(vm) + " to " + std::to_string(mib) + " MiB");
    return {};
  }

 private:
  // The connection, opened again when the daemon went away (it restarted).
  Expected<void> connection() {
    if (conn_ && virConnectIsAlive(conn_) == 1) return {};
    if (conn_) virConnectClose(std::exchange(conn_, nullptr));
    return open();
  }

  Expected<Domain> domain(const std::string& vm) {
    auto c = connection();
    if (!c) return c.error();
    Domain d(virDomainLookupByName(conn_, vm.c_str()));
    if (!d) return failed(conn_, "VM " + quoted(vm));
    return d;
  }

  Expected<DomainXml> domain_xml(virDomainPtr d, const std::string& vm, std::string* raw = nullptr) {
    CString xml(virDomainGetXMLDesc(d, 0));
    if (!xml) return failed(conn_, "the XML of VM " + quoted(vm), ErrorCode::failed);
    auto parsed = parse_domain_xml(xml.get(), options_.max_domain_xml);
    if (!parsed) return Error{parsed.error().message + " (VM " + quoted(vm) + ")", parsed.error().code};
    if (raw) *raw = xml.get();
    return parsed;
  }

  Expected<HostReading> read_host() {
    HostReading h;
    virNodeInfo info;
    if (virNodeGetInfo(conn_, &info) < 0) return failed(conn_, "node info", ErrorCode::failed);
    if (!options_.host_name.empty()) {
      h.name = options_.host_name;
    } else {
      CString name(virConnectGetHostname(conn_));
      if (!name) return failed(conn_, "the node's hostname", ErrorCode::failed);
      h.name = name.get();
    }
    h.memory_mib = mib_of_kib(info.memory);
    h.cpus = static_cast<int>(info.cpus);
    h.cpu_mhz = static_cast<std::int64_t>(info.cpus) * info.mhz;
    h.available_mib = available_mib();
    read_cpu_times(h);
    return h;
  }

  // libvirt has no MemAvailable: free, buffers and the page cache are what
  // `free` once called available, and the nearest libvirt gives. Without node
  // statistics, the free memory alone; with neither (the test driver given a
  // node file), nothing is known to be free, so nothing is offered.
  std::int64_t available_mib() {
    int n = 0;
    if (virNodeGetMemoryStats(conn_, VIR_NODE_MEMORY_STATS_ALL_CELLS, nullptr, &n, 0) == 0 && n > 0 && n < 64) {
      std::vector<virNodeMemoryStats> stats(static_cast<std::size_t>(n));
      if (virNodeGetMemoryStats(conn_, VIR_NODE_MEMORY_STATS_ALL_CELLS, stats.data(), &n, 0) == 0) {
        std::uint64_t kib = 0;
        for (int i = 0; i < n; ++i) {
          std::string_view field = stats[i].field;
          if (field == VIR_NODE_MEMORY_STATS_FREE || field == VIR_NODE_MEMORY_STATS_BUFFERS ||
              field == VIR_NODE_MEMORY_STATS_CACHED)
            kib += stats[i].value;
        }
        return mib_of_kib(kib);
      }
    }
    return mib_of_bytes(virNodeGetFreeMemory(conn_));
  }

  // Where the driver has them (not the test driver): nanoseconds across every CPU.
  void read_cpu_times(HostReading& h) {
    int n = 0;
    if (virNodeGetCPUStats(conn_, VIR_NODE_CPU_STATS_ALL_CPUS, nullptr, &n, 0) != 0 || n <= 0 || n >= 64) return;
    std::vector<virNodeCPUStats> stats(static_cast<std::size_t>(n));
    if (virNodeGetCPUStats(conn_, VIR_NODE_CPU_STATS_ALL_CPUS, stats.data(), &n, 0) != 0) return;
    std::uint64_t busy = 0, idle = 0;
    for (int i = 0; i < n; ++i) {
      std::string_view field = stats[i].field;
      if (field == VIR_NODE_CPU_STATS_KERNEL || field == VIR_NODE_CPU_STATS_USER)
        busy += stats[i].value;
      else if (field == VIR_NODE_CPU_STATS_IDLE || field == VIR_NODE_CPU_STATS_IOWAIT)
        idle += stats[i].value;
    }
    h.cpu_busy_s = static_cast<double>(busy) / 1e9;
    h.cpu_total_s = static_cast<double>(busy + idle) / 1e9;
  }

  Expected<VmReading> read_vm(virDomainPtr d) {
    VmReading v;
    const char* name = virDomainGetName(d);
    if (!name) return failed(conn_, "a VM's name", ErrorCode::failed);
    v.name = name;
    int state = 0, reason = 0;
    virDomainInfo info;
    if (virDomainGetState(d, &state, &reason, 0) < 0 || virDomainGetInfo(d, &info) < 0)
      return failed(conn_, "VM " + quoted(v.name) + " left out", ErrorCode::failed);
    auto xml = domain_xml(d, v.name);
    if (!xml) return Error{xml.error().message + ", left out", xml.error().code};
    v.running = has_process(state);
    v.vcpus = static_cast<int>(info.nrVirtCpu);
    std::uint64_t size = 0, current = 0;
    for (const VirtioMem& m : xml->virtio_mem) {
      size += m.size;
      current += m.current;
    }
    // libvirt's <memory> counts every memory device's full size; the boot
    // memory is what is left.
    std::uint64_t total = static_cast<std::uint64_t>(info.maxMem) * KiB;
    v.memory_mib = mib_of_bytes(total > size ? total - size : 0);
    v.plugged_mib = mib_of_bytes(current);
    v.pluggable_mib = mib_of_bytes(size);
    if (xml->balloon) v.balloon_mib = mib_of_kib(info.memory);
    if (!v.running) return v;
    v.cpu_s = static_cast<double>(info.cpuTime) / 1e9;
    if (xml->balloon) read_guest_stats(d, v);
    return v;
  }

  // The balloon driver's statistics, and the VMM's resident memory. A guest
  // without the driver gives fewer (or none): each is optional.
  void read_guest_stats(virDomainPtr d, VmReading& v) {
    // The period holds until the VM stops: set once per run (a run has its own id).
    std::string run = v.name + "#" + std::to_string(virDomainGetID(d));
    runs_seen_.insert(run);
    if (!stats_period_set_.count(run) &&
        virDomainSetMemoryStatsPeriod(d, static_cast<int>(options_.stats_period.count()), VIR_DOMAIN_AFFECT_LIVE) == 0)
      stats_period_set_.insert(run);
    virDomainMemoryStatStruct stats[VIR_DOMAIN_MEMORY_STAT_NR];
    int n = virDomainMemoryStats(d, stats, VIR_DOMAIN_MEMORY_STAT_NR, 0);
    for (int i = 0; i < n; ++i) {
      std::uint64_t value = stats[i].val;
      switch (stats[i].tag) {
        // libvirt gives swap traffic in KiB; node.hpp counts 4 KiB pages.
        case VIR_DOMAIN_MEMORY_STAT_SWAP_IN: v.swap_in = value / 4; break;
        case VIR_DOMAIN_MEMORY_STAT_SWAP_OUT: v.swap_out = value / 4; break;
        case VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT: v.major_faults = value; break;
        case VIR_DOMAIN_MEMORY_STAT_UNUSED: v.guest_free_mib = mib_of_kib(value); break;
        // USABLE is the guest's MemAvailable; AVAILABLE is its MemTotal.
        case VIR_DOMAIN_MEMORY_STAT_USABLE: v.guest_available_mib = mib_of_kib(value); break;
        case VIR_DOMAIN_MEMORY_STAT_RSS: v.rss_mib = mib_of_kib(value); break;
        default: break;
      }
    }
  }

  // Lent memory in or out: the virtio-mem device's requested size moves by
  // `lent.mib`. memlend is the only one to change it, so the size read here
  // is still the device's when the update reaches libvirt.
  Expected<void> plug(const std::string& vm, const LentMemory& lent, int sign) {
    const char* verb = sign > 0 ? "attach" : "detach";
    std::string what = std::string(verb) + " " + std::to_string(lent.mib) + " MiB (lease " + quoted(lent.lease) +
                       ") " + (sign > 0 ? "to" : "from") + " VM " + quoted(vm);
    if (lent.mib <= 0 || static_cast<std::uint64_t>(lent.mib) > UINT64_MAX / MiB)
      return Error{"libvirt: " + what + ": not a size", ErrorCode::invalid_input};
    auto d = domain(vm);
    if (!d) return d.error();
    std::string raw;
    auto xml = domain_xml(d->get(), vm, &raw);
    if (!xml) return xml.error();
    if (xml->virtio_mem.empty())
      return Error{"libvirt: " + what + ": the VM has no virtio-mem device", ErrorCode::refused};
    std::uint64_t bytes = static_cast<std::uint64_t>(lent.mib) * MiB;
    // The first device with room takes lent memory; the last that holds
    // enough gives it back.
    std::optional<std::size_t> chosen;
    for (std::size_t i = 0; i < xml->virtio_mem.size(); ++i) {
      const VirtioMem& m = xml->virtio_mem[i];
      bool fits = sign > 0 ? m.size >= m.requested && m.size - m.requested >= bytes : m.requested >= bytes;
      if (fits && (sign < 0 || !chosen)) chosen = i;
    }
    if (!chosen)
      return Error{"libvirt: " + what + ": " +
                       (sign > 0 ? "no virtio-mem device has that much room" : "no virtio-mem device has that much requested"),
                   ErrorCode::refused};
    const VirtioMem& m = xml->virtio_mem[*chosen];
    std::uint64_t requested = sign > 0 ? m.requested + bytes : m.requested - bytes;
    if (m.block != 0 && requested % m.block != 0)
      return Error{"libvirt: " + what + ": " + std::to_string(mib_of_bytes(requested)) +
                       " MiB is not a multiple of the device's block of " + std::to_string(m.block / KiB) + " KiB",
                   ErrorCode::invalid_input};
    auto update = virtio_mem_update_xml(raw, *chosen, requested, options_.max_domain_xml);
    if (!update) return update.error();
    if (virDomainUpdateDeviceFlags(d->get(), update->c_str(), VIR_DOMAIN_AFFECT_LIVE) < 0) return failed(conn_, what);
    return {};
  }

  LibvirtOptions options_;
  virConnectPtr conn_ = nullptr;
  std::set<std::string> stats_period_set_;
  std::set<std::string> runs_seen_;  // in the reading under way
};

}  // namespace

Expected<std::unique_ptr<NodePlatform>> make_libvirt(LibvirtOptions options) {
  if (options.uri.empty()) return Error{"libvirt: an empty URI", ErrorCode::invalid_input};
  if (options.keepalive_interval.count() <= 0 || options.keepalive_interval.count() > INT_MAX ||
      options.stats_period.count() <= 0 || options.stats_period.count() > INT_MAX)
    return Error{"libvirt: the keepalive interval and the statistics period must be positive", ErrorCode::invalid_input};
  init_libvirt();
  auto platform = std::make_unique<Libvirt>(std::move(options));
  auto opened = platform->open();
  if (!opened) return opened.error();
  return std::unique_ptr<NodePlatform>(std::move(platform));
}

}  // namespace memlend::platform
