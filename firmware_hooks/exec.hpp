// The `exec` backend: a vendor's own executables, one per verb, in a directory
// the operator configures. memlend knows nothing of the vendor's firmware or
// hypervisor; the hooks do, and answer in a small, versioned contract:
//
//   telemetry                              one JSON document on stdout (schema below)
//   attach  VM LEASE DONOR DONOR_ADDRESS MIB   the VM's guest gets MIB of lent memory
//   detach  VM LEASE DONOR DONOR_ADDRESS MIB   ... and gives it back
//   migrate VM HOST ADDRESS                live-migrates the VM; returns once it runs there
//   incoming VM                            on the target, optional: readies the node to take
//                                          the VM in and prints the ADDRESS migrate is given
//   balloon VM MIB                         the guest's balloon keeps MIB of its boot memory
//
// An action hook exits 0 when done; any other status is a refusal, and the
// first line of its stdout the reason. A refusing hook promises it left the VM
// as it was: memlend takes a refusal at its word and moves on, where a hook
// killed by a signal or at its deadline leaves the VM's state unknown.
//
// The hooks run as memlend runs, as root: a directory or hook that anyone but
// root or memlend's own user could change is refused, as sudo and sshd refuse
// such files. Each runs in a process group of its own, with a minimal
// environment, stdin from /dev/null and no descriptor but 0, 1 and 2; at its
// deadline, or when its stdout grows past the limit, the whole group is killed.
// Whatever it leaves running in its group when it exits is killed too: a hook's
// work is over when it answers.
#pragma once

#include "firmware_hooks/node.hpp"

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace memlend::platform {

struct ExecOptions {
  std::string hooks_dir;  // absolute
  // Reading and plugging take a hook seconds; a migration copies the guest's
  // memory across the network, which takes minutes for a large one.
  std::chrono::milliseconds timeout{10000};
  std::chrono::milliseconds migrate_timeout{600000};
  // A hook's stdout past this many bytes is cut and the hook refused; the
  // telemetry of hundreds of VMs is a few hundred KiB.
  std::size_t max_output = 1 << 20;
};

// The version of the telemetry document this memlend reads.
inline constexpr int exec_telemetry_version = 1;

// Telemetry, version 1 (sizes in MiB, whole numbers; unknown keys are ignored,
// so that a hook may say more than memlend reads):
//   {"version": 1,
//    "host": {"name", "memory_mib", "available_mib", "cpus", "cpu_mhz",
//             optional "cpu_busy_s", "cpu_total_s", "memory_pressure_some",
//             "memory_pressure_full", "cpu_pressure_some"},
//    "vms": [{"name", "memory_mib", "vcpus", "plugged_mib", "pluggable_mib",
//             optional "running" (true), "balloon_mib", "guest_available_mib",
//             "guest_free_mib", "swap_in", "swap_out", "major_faults",
//             "rss_mib", "cpu_s", "cpu_throttled_s"}]}
// mirroring HostReading and VmReading. Every error names the key, as
// "telemetry: vms[2].memory_mib: not a non-negative integer"; a version other
// than 1 is ErrorCode::refused, anything else wrong ErrorCode::invalid_input.
// A VM the hook cannot read, it leaves out: one wrong entry fails the reading.
Expected<NodeReading> parse_exec_telemetry(std::string_view text);

// ErrorCode::invalid_input when hooks_dir is not an absolute path to a
// directory, or is not safe to run from (owner, group/world-writable). A hook
// missing from it is only an error when it is called: ErrorCode::unavailable.
Expected<std::unique_ptr<NodePlatform>> make_exec(ExecOptions options);

}  // namespace memlend::platform
