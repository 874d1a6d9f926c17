// The words of DESIGN.md as plain C++ values: what a scenario describes and
// what the policy decides. No CAF, no JSON: this header is shared by the
// planner, the actors, the store and the CLI.
#pragma once

#include "core/vocabulary.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memlend::policy {

using HostId = std::uint32_t;
using VmId = std::uint32_t;
inline constexpr HostId no_host = ~HostId{0};

enum class Heuristic { first_fit, best_fit, worst_fit, cosine, l2_diff, l2_ratio };
enum class Order { listed, ffd_prod, ffd_sum };
enum class DonorMode { fewest, spread };
enum class DecisionKind { none, remote_memory, migrate, recommend_migration, unsatisfied };
using memlend::Transport;

std::string_view to_string(Heuristic h);
std::string_view to_string(Order o);
std::string_view to_string(DonorMode d);
std::string_view to_string(DecisionKind k);
using memlend::to_string;
std::optional<Heuristic> parse_heuristic(std::string_view s);
std::optional<Order> parse_order(std::string_view s);
std::optional<DonorMode> parse_donor_mode(std::string_view s);

struct Settings {
  std::int64_t page_size_kib = 4;
  std::int64_t rdma_block_kib = 1024;
  std::int64_t buffer_blocks = 1;
  Heuristic placement = Heuristic::best_fit;
  Order order = Order::listed;
  DonorMode donors = DonorMode::fewest;
  std::int64_t migrate_after_s = 600;
  std::int64_t detect_samples = 3;
  // How often the platform samples each VM's demand (run only).
  std::int64_t sample_period_s = 10;
};

struct Host {
  std::string name;
  std::int64_t memory_mib = 0;  // what the host has for VMs, after the hypervisor
  std::int64_t cpu_mhz = 0;
  bool rdma = true;             // an RDMA NIC; without one the data path runs over TCP
  bool data_path = true;        // memlend's data path reaches this host at all
  bool up = true;
  std::int64_t reserved_mib = 0;  // never lent: HA restart room, growth of its own VMs
  // Hosts lend only within their fabric (an RDMA network does not span racks).
  std::string fabric;
};

struct RemotePart {
  HostId donor = no_host;
  std::int64_t mib = 0;
};

struct Vm {
  std::string name;
  HostId host = no_host;
  std::int64_t memory_mib = 0;
  std::int64_t cpu_mhz = 0;
  std::vector<RemotePart> remote;     // memory it already borrows
  std::int64_t remote_for_s = 0;      // how long it has leaned on remote memory
  std::optional<DonorMode> donors;    // overrides settings.donors for this VM
};

// A scenario event: a VM's demand changes, or a host goes down or comes up.
struct Event {
  double at_s = 0;
  VmId vm = ~VmId{0};
  HostId host = no_host;
  std::optional<std::int64_t> memory_mib;
  std::optional<std::int64_t> cpu_mhz;
  std::optional<bool> up;
  bool is_vm_event() const { return vm != ~VmId{0}; }
};

struct Scenario {
  Settings settings;
  std::vector<Host> hosts;
  std::vector<Vm> vms;
  std::vector<Event> events;  // sorted by at_s, stable

  std::optional<HostId> find_host(std::string_view name) const;
  std::optional<VmId> find_vm(std::string_view name) const;
};

struct LeaseGrant {
  HostId donor = no_host;
  std::int64_t mib = 0;
  Transport transport = Transport::rdma;
};

struct Decision {
  VmId vm = 0;
  HostId host = no_host;  // where the VM runs when decided
  DecisionKind kind = DecisionKind::none;
  std::int64_t extra_memory_mib = 0;
  std::int64_t extra_cpu_mhz = 0;
  std::vector<LeaseGrant> leases;  // new leases (merged with any it already has, per donor)
  // Its local share after the decision. When migrating: what the target
  // gives it anew; memory the target already lent it becomes local on top.
  std::int64_t local_mib = 0;
  std::int64_t buffer_kib = 0;     // the VM's whole local buffer: one per lease
  std::int64_t mirror_mib = 0;     // 0: no mirror
  HostId target = no_host;
  std::string reason;
};

// lcm(page, block) × blocks: the smallest buffer that holds whole pages and
// whole RDMA blocks at once (the patent: 512 KiB pages, 1024 KiB blocks → 1 MiB).
std::int64_t buffer_kib_per_lease(const Settings& s);

}  // namespace memlend::policy
