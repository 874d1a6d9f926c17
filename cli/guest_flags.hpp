// The options of `run` and `agent` that put real QEMU guests on lent memory
// (dataplane/guest_memory.hpp): which VMs, and where their memory files are.
#pragma once

#include "cli/cli.hpp"
#include "core/log.hpp"
#include "dataplane/guest_memory.hpp"
#include "policy/model.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace memlend::cli {

struct GuestFlags {
  std::vector<std::string> qemu_vms;
  std::string memory_dir = "/run/memlend/mem";
  CLI::Option* scale = nullptr;  // --data-kib-per-gib, to see whether it was given
};

inline void add_guest_flags(CLI::App* cmd, GuestFlags& f, CLI::Option* scale) {
  f.scale = scale;
  cmd->add_option("--qemu-vm", f.qemu_vms,
                  "NAME,qmp=SOCKET,max-mib=MIB[,device=ID]: a QEMU VM whose lent memory is\n"
                  "the file MEMORY_DIR/NAME (its virtio-mem memdev, MIB in size), plugged\n"
                  "through its QMP socket; repeatable. Lends unscaled memory (1048576 KiB per GiB)");
  cmd->add_option("--memory-dir", f.memory_dir,
                  "Where the --qemu-vm VMs' memory files are served (default /run/memlend/mem)")
      ->type_name("DIR");
}

// The guests' options, and the scale they need: real guests borrow real
// memory, so --data-kib-per-gib is 1048576 with them (set when not given).
// `scenario`: the VMs must be its; none on a real node, whose VMs are found.
inline Expected<GuestMemoryOptions> guest_options(const GuestFlags& f, std::uint64_t& data_kib_per_gib,
                                                  bool data_path_on, const policy::Scenario* scenario) {
  GuestMemoryOptions o;
  o.dir = f.memory_dir;
  // Plugs, unplugs and what refused them, for a person reading the log.
  o.log = [](const std::string& line) { log::info({}, line); };
  for (const auto& spec : f.qemu_vms) {
    auto vm = parse_qemu_vm(spec);
    if (!vm) return vm.error();
    if (o.vms.count(vm->first)) return Error{"--qemu-vm: " + vm->first + " is named twice", ErrorCode::invalid_input};
    if (scenario && !scenario->find_vm(vm->first))
      return Error{"--qemu-vm: the scenario has no VM " + vm->first, ErrorCode::invalid_input};
    if (vm->second.max_bytes % o.block_bytes != 0)
      return Error{"--qemu-vm " + vm->first + ": max-mib must be a multiple of " +
                   std::to_string(o.block_bytes >> 20) + " (virtio-mem's block)", ErrorCode::invalid_input};
    o.vms.insert(*vm);
  }
  if (o.vms.empty()) return o;
  if (!data_path_on) return Error{"--qemu-vm: needs the data path (--data-path on)", ErrorCode::invalid_input};
  constexpr std::uint64_t unscaled = 1024 * 1024;
  if (f.scale && f.scale->count() > 0 && data_kib_per_gib != unscaled)
    return Error{"--qemu-vm: a real guest's memory is lent unscaled: --data-kib-per-gib must be 1048576",
                 ErrorCode::invalid_input};
  data_kib_per_gib = unscaled;
  return o;
}

}  // namespace memlend::cli
