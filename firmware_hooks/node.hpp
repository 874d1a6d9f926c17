// A real node's platform: what memlend reads from this node's hypervisor and
// asks of it, with VMs and hosts known by the hypervisor's own names. The
// scenario-driven `Platform` (platform.hpp) numbers hosts and VMs from a file;
// a real node has no file, so an agent learns its host and VMs from a
// NodePlatform and the controller learns the cluster from its agents.
//
// Backends: `qemu` (QMP sockets in a directory, as Proxmox VE keeps them),
// `libvirt` (its C API), `exec` (a vendor's hook executables) and `sim` (a
// scenario's host, for the demo and the tests). Every reading comes from
// another process or the kernel and is checked like input from a peer: a
// backend returns an error value, never throws, and never waits unbounded.
#pragma once

#include "core/expected.hpp"
#include "policy/model.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memlend::platform {

// The host as its kernel (or its hypervisor) reports it. Sizes in MiB.
struct HostReading {
  std::string name;                  // the node's name (its hostname, unless configured)
  std::int64_t memory_mib = 0;       // total memory
  std::int64_t available_mib = 0;    // what could be given to VMs now (MemAvailable)
  int cpus = 0;
  std::int64_t cpu_mhz = 0;          // capacity: cpus × the nominal clock
  // Cumulative since boot, in seconds across every CPU: busy (user, nice,
  // system, irq, softirq, steal) and all; a rate needs two readings.
  std::optional<double> cpu_busy_s;
  std::optional<double> cpu_total_s;
  // Pressure stall information (/proc/pressure), the share of the last 10 s
  // in which some task stalled (0-100). Absent where the kernel has no PSI.
  std::optional<double> memory_pressure_some;
  std::optional<double> memory_pressure_full;
  std::optional<double> cpu_pressure_some;
};

// One VM as its hypervisor reports it. Sizes in MiB; an absent reading is one
// this backend or this guest does not give (no balloon driver, no cgroup).
struct VmReading {
  std::string name;                  // the hypervisor's name: Proxmox's id, libvirt's domain name
  bool running = true;
  std::int64_t memory_mib = 0;       // its boot memory, without what was plugged
  int vcpus = 0;
  // virtio-mem: what is plugged now and the most that may be (the device's
  // size, so the most it may borrow). Zero without a virtio-mem device.
  std::int64_t plugged_mib = 0;
  std::int64_t pluggable_mib = 0;
  // The balloon's target (what the guest is asked to keep), when it has one.
  std::optional<std::int64_t> balloon_mib;
  // The guest's own view, from its balloon driver's statistics.
  std::optional<std::int64_t> guest_available_mib;
  std::optional<std::int64_t> guest_free_mib;
  // How old those statistics are, in seconds, where the backend knows: a
  // guest reports them every few seconds, not at each reading.
  std::optional<double> guest_stats_age_s;
  // Cumulative counters from the guest: pages swapped in and out, major faults.
  std::optional<std::uint64_t> swap_in;
  std::optional<std::uint64_t> swap_out;
  std::optional<std::uint64_t> major_faults;
  // The VMM process on the host: resident memory, and CPU seconds used since
  // it started (cumulative), and whether its cgroup throttled it.
  std::optional<std::int64_t> rss_mib;
  std::optional<double> cpu_s;
  std::optional<double> cpu_throttled_s;
};

struct NodeReading {
  std::chrono::steady_clock::time_point at{};
  HostReading host;
  std::vector<VmReading> vms;        // sorted by name
};

// Lent memory handed to a VM: the lease's donor and size. For qemu and
// libvirt memlend's own data plane serves the memory and the platform only
// plugs it into the guest; an exec hook is given all of it and does the rest.
struct LentMemory {
  std::string lease;                 // the lease's id, unique in the cluster
  std::string donor;                 // the donor host's name
  std::string donor_address;         // where its data path listens (host:port), may be empty
  std::int64_t mib = 0;
};

// Where a live migration goes.
struct MigrationTarget {
  std::string host;                  // the target host's name
  std::string address;               // the platform's address for it (QEMU's incoming URI, libvirt's URI)
};

class NodePlatform {
 public:
  virtual ~NodePlatform() = default;
  virtual std::string_view backend() const = 0;

  // What the node and its VMs look like now. ErrorCode::unavailable when the
  // platform cannot be reached (no QMP directory, libvirt down, a hook that
  // failed); one VM that cannot be read is left out (and logged), not an error.
  virtual Expected<NodeReading> read() = 0;

  // The VM's guest gets `lent` more memory, and gives it back. A refusal is
  // ErrorCode::refused with the platform's reason, and leaves the VM as it was.
  virtual Expected<void> attach(const std::string& vm, const LentMemory& lent) = 0;
  virtual Expected<void> detach(const std::string& vm, const LentMemory& lent) = 0;
  // Live-migrates the VM; returns once it runs at the target (and no more
  // here), or has been cancelled and still runs here. `target.address` comes
  // from another node: each backend takes only the kinds of address it
  // migrates over (never one that would run a command here).
  virtual Expected<void> migrate(const std::string& vm, const MigrationTarget& target) = 0;
  // The target's side of a migration: readies this node to take the VM in
  // (qemu starts the incoming QEMU) and says the address the VM's node
  // migrates it to. ErrorCode::refused where this node takes no migrations.
  // cancel_receive undoes it when the migration did not happen; a VM that
  // already runs here is left alone.
  virtual Expected<std::string> receive(const std::string& vm) {
    return Error{std::string(backend()) + ": this node is not set up to receive migrations (VM " + vm + ")",
                 ErrorCode::refused};
  }
  virtual void cancel_receive(const std::string& vm) { (void)vm; }
  // Asks the guest's balloon to keep `mib` of its boot memory (the rest goes
  // back to the host). ErrorCode::refused where the VM has no balloon.
  virtual Expected<void> set_balloon(const std::string& vm, std::int64_t mib) = 0;
};

// One host of a scenario seen as a real node, at scenario time `at_s`: for
// `inspect --platform sim` and the tests. Its guests report what a guest
// would: available memory of what they have beyond their demand plus the
// estimator's default margin, and faults while short, so that the demand
// estimator (demand.hpp) finds the scenario's demand. ErrorCode::invalid_input
// when the scenario has no such host.
Expected<std::unique_ptr<NodePlatform>> make_sim_node(const policy::Scenario& s, const std::string& host,
                                                      double at_s);

}  // namespace memlend::platform
