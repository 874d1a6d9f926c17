// The values actors exchange, beside atoms and plain numbers. Each has an
// inspect() so CAF can print and (across nodes) serialise it; the names given
// to meta::type_name are the wire names and must not change.
#pragma once

#include "core/facts.hpp"
#include "firmware_hooks/platform.hpp"

#include <caf/meta/type_name.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace memlend {

// What a VM actor needs to come back after a crash.
struct VmCheckpoint {
  std::uint32_t vm = 0;
  std::uint32_t host = 0;
  bool need_active = false;
  std::int64_t need_streak = 0;
  bool surplus_active = false;
  std::int64_t surplus_streak = 0;
  bool has_remote = false;
  double remote_since = 0;
  bool recommended = false;
  std::int64_t asked_mem = -1;  // the need last put to the planner, to ask again only when it changes
  std::int64_t asked_cpu = -1;
  std::uint64_t generation = 0;
  std::int64_t samples = 0;
};

// What a host actor needs to come back after a crash: its own ledger.
struct HostCheckpoint {
  std::uint32_t host = 0;
  bool up = true;
  bool seen = false;  // has had telemetry
  std::int64_t used_mem = 0;
  std::int64_t used_cpu = 0;
  std::vector<std::uint64_t> lease_ids;  // committed loans
  std::vector<std::int64_t> lease_mib;
  std::vector<std::uint64_t> pending_ids;  // phase one only
  std::vector<std::int64_t> pending_mib;
  std::vector<std::uint32_t> arriving_vms;  // VMs migrating in, phase one
  std::vector<std::int64_t> arriving_mem;
  std::vector<std::int64_t> arriving_cpu;
};

// What a host is, as its agent finds it on its platform: the facts a host
// that joins brings. Its id is the controller's to give.
struct HostFacts {
  std::string name;
  std::int64_t memory_mib = 0;
  std::int64_t cpu_mhz = 0;
  bool rdma = false;
  bool data_path = true;
  std::int64_t reserved_mib = 0;
  std::string fabric;
};

inline policy::Host host_of(const HostFacts& f, bool up) {
  policy::Host h;
  h.name = f.name;
  h.memory_mib = f.memory_mib;
  h.cpu_mhz = f.cpu_mhz;
  h.rdma = f.rdma;
  h.data_path = f.data_path;
  h.up = up;
  h.reserved_mib = f.reserved_mib;
  h.fabric = f.fabric;
  return h;
}

// An agent introduces itself to the controller (cluster mode). Who it is:
// identity/cluster_auth.hpp.
struct AgentHello {
  std::string cluster;        // the cluster's name; another cluster's agent is refused
  std::string host;           // the host it speaks for
  std::string proof;          // HMAC-SHA256(cluster secret, cluster + host + incarnation), hex
  std::uint64_t incarnation = 0;  // new for every start of the agent process
  std::string data_addr;      // where its data path listens (host:port)
  std::vector<std::uint64_t> held;  // leases it holds as a donor
  std::string nonce;          // the controller's challenge for this join
  std::string certificate;    // its TLS certificate (PEM): CN or a DNS SAN is `host`
  std::string signature;      // over join_statement(nonce, cluster, host, incarnation) with its key, hex
  std::string pool_secret;    // its donor pool's secret (hex), for the controller only
  // What its platform says of its host; the name is `host`'s whatever this
  // says. A controller without a scenario admits new hosts with these.
  HostFacts facts;
};

// Cluster mode: where a VM runs and every lease it holds, as absolute facts,
// so an agent can apply them any number of times and stay right.
struct RemoteState {
  std::uint32_t vm = 0;
  std::uint32_t host = 0;
  std::vector<LeaseInfo> leases;
  // The VM's name and those of the hosts above (its host, its leases'
  // donors): an agent of a real node knows VMs and hosts by name only.
  std::string name;
  std::map<std::uint32_t, std::string> host_names;
};

// The leases an agent may know of: those its host lends (donor) or its VMs
// borrow through (recipient). Another lease's address, id and secret would let
// a node read or overwrite memory that is none of its business.
inline std::vector<LeaseInfo> leases_of_host(const std::vector<LeaseInfo>& leases, std::uint32_t host) {
  std::vector<LeaseInfo> out;
  for (const auto& l : leases)
    if (l.donor == host || l.recipient == host) out.push_back(l);
  return out;
}

// An agent speaks for its own host only. Of the samples its host actor
// forwards (stamped there with that host, whatever the agent said), those of
// VMs the controller places on another host are dropped: a compromised node
// must not steer another host's VM with made-up demand.
inline std::vector<platform::VmSample> samples_of_host(const std::vector<RemoteState>& placement,
                                                      std::vector<platform::VmSample> vms) {
  vms.erase(std::remove_if(vms.begin(), vms.end(),
                           [&](const platform::VmSample& v) {
                             return v.vm >= placement.size() || placement[v.vm].host != v.host;
                           }),
            vms.end());
  return vms;
}

// The supervisor's children, in the order a stop ends them: the registrar and
// the driver first, so that no new telemetry or join starts work.
enum class ChildKind : std::uint8_t { registrar, driver, vm, host, planner, lease, mirror };
inline constexpr ChildKind child_kinds[] = {ChildKind::registrar, ChildKind::driver, ChildKind::vm,   ChildKind::host,
                                            ChildKind::planner,   ChildKind::lease,  ChildKind::mirror};

inline std::string_view to_string(ChildKind k) {
  switch (k) {
    case ChildKind::registrar: return "registrar";
    case ChildKind::driver: return "driver";
    case ChildKind::vm: return "vm";
    case ChildKind::host: return "host";
    case ChildKind::planner: return "planner";
    case ChildKind::lease: return "lease";
    case ChildKind::mirror: return "mirror";
  }
  return "unknown";
}

// Where a VM runs now, for an agent rebuilding its view of the platform.
struct Placement {
  std::uint32_t vm = 0;
  std::uint32_t host = 0;
  std::string name;  // only for the VMs the joining agent is party to
};

// The controller's answer to a join.
struct JoinReply {
  bool ok = false;
  std::string reason;         // why not
  std::uint32_t host = 0;
  double scenario_t = 0;      // the scenario clock now
  double speed = 1;
  std::vector<LeaseInfo> leases;     // the active leases it lends or borrows through: attach them to rebuild
  std::vector<Placement> placements; // VMs that moved since the scenario began, and those of `leases`
  std::map<std::uint32_t, std::string> host_names;  // of the hosts `leases` name
  std::uint64_t data_bytes_per_mib = 0;  // the data path's scale; 0: no data path
  // The cluster's sample period, so that an agent of a real node, which
  // reads no scenario, samples at the pace the controller's timers expect.
  std::int64_t sample_period_s = 0;
  // The controller's leadership epoch (0: it keeps no store): an agent
  // refuses a controller whose epoch is below one it has joined before.
  std::uint64_t epoch = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, AgentHello& x) {
  return f(caf::meta::type_name("memlend.agent_hello"), x.cluster, x.host, x.proof, x.incarnation, x.data_addr,
           x.held, x.nonce, x.certificate, x.signature, x.pool_secret, x.facts);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, HostFacts& x) {
  return f(caf::meta::type_name("memlend.host_facts"), x.name, x.memory_mib, x.cpu_mhz, x.rdma, x.data_path,
           x.reserved_mib, x.fabric);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, RemoteState& x) {
  return f(caf::meta::type_name("memlend.remote_state"), x.vm, x.host, x.leases, x.name, x.host_names);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, Placement& x) {
  return f(caf::meta::type_name("memlend.placement"), x.vm, x.host, x.name);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, JoinReply& x) {
  return f(caf::meta::type_name("memlend.join_reply"), x.ok, x.reason, x.host, x.scenario_t, x.speed, x.leases,
           x.placements, x.data_bytes_per_mib, x.host_names, x.sample_period_s, x.epoch);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, VmCheckpoint& x) {
  return f(caf::meta::type_name("memlend.vm_checkpoint"), x.vm, x.host, x.need_active, x.need_streak,
           x.surplus_active, x.surplus_streak, x.has_remote, x.remote_since, x.recommended, x.asked_mem,
           x.asked_cpu, x.generation, x.samples);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, HostCheckpoint& x) {
  return f(caf::meta::type_name("memlend.host_checkpoint"), x.host, x.up, x.seen, x.used_mem, x.used_cpu,
           x.lease_ids, x.lease_mib, x.pending_ids, x.pending_mib, x.arriving_vms, x.arriving_mem, x.arriving_cpu);
}

}  // namespace memlend

namespace memlend::platform {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, HostSample& x) {
  return f(caf::meta::type_name("memlend.host_sample"), x.host, x.up, x.used_mem, x.used_cpu, x.lists_every_vm);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, VmSample& x) {
  return f(caf::meta::type_name("memlend.vm_sample"), x.vm, x.host, x.host_up, x.demand_mem, x.demand_cpu,
           x.local_mem, x.local_cpu, x.remote_mem, x.host_free_mem, x.name, x.reason);
}

}  // namespace memlend::platform
