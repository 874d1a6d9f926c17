// The options that choose and reach a real node's platform, taken alike by
// `inspect` and (as a node's service) the agent, so that one config file's
// keys serve both: platform, qmp-dir, libvirt-uri, hooks-dir, hook-timeout.
#pragma once

#include "core/expected.hpp"
#include "firmware_hooks/node.hpp"
#include "cli/cli.hpp"

#include <memory>
#include <string>

namespace memlend::cli {

struct PlatformFlags {
  std::string platform;                      // qemu, libvirt, exec or sim
  std::string qmp_dir = "/run/memlend/qmp";
  std::string libvirt_uri = "qemu:///system";
  std::string hooks_dir = "/etc/memlend/hooks";
  std::string hook_timeout = "10s";
  // Where other nodes migrate VMs to this node (the target's side): empty,
  // it takes none.
  std::string qemu_incoming;
  std::string libvirt_migrate_uri;
};

void add_platform_flags(CLI::App& cmd, PlatformFlags& f);
// The target's side of a migration, for the agent only: qemu-incoming,
// libvirt-migrate-uri.
void add_receive_flags(CLI::App& cmd, PlatformFlags& f);

// The platform the flags name. `scenario` and `host` serve `sim` only.
// ErrorCode::invalid_input for a bad flag, unavailable when the platform
// cannot be reached.
Expected<std::unique_ptr<platform::NodePlatform>> open_platform(const PlatformFlags& f, const std::string& scenario,
                                                                const std::string& host);

}  // namespace memlend::cli
