#include "cli/platform_flags.hpp"

#include "scenario/scenario.hpp"

namespace memlend::cli {

void add_platform_flags(CLI::App& cmd, PlatformFlags& f) {
  cmd.add_option("--platform", f.platform,
                 "What this node's VMs run on: qemu (QMP sockets in --qmp-dir), libvirt (--libvirt-uri), exec "
                 "(vendor hooks in --hooks-dir) or sim (a host of --scenario)");
  cmd.add_option("--qmp-dir", f.qmp_dir, "qemu: the directory of the VMs' QMP sockets for memlend, one NAME.qmp per VM")
      ->capture_default_str();
  cmd.add_option("--libvirt-uri", f.libvirt_uri, "libvirt: the connection URI")->capture_default_str();
  cmd.add_option("--hooks-dir", f.hooks_dir, "exec: the directory of the vendor's hook executables")
      ->capture_default_str();
  cmd.add_option("--hook-timeout", f.hook_timeout, "exec: how long a hook may run, e.g. 10s")->capture_default_str();
}

Expected<std::unique_ptr<platform::NodePlatform>> open_platform(const PlatformFlags& f, const std::string& scenario,
                                                                const std::string& host) {
  if (f.platform.empty())
    return Error{"--platform: required (qemu, libvirt, exec or sim)", ErrorCode::invalid_input};
  if (f.platform == "sim") {
    if (scenario.empty() || host.empty())
      return Error{"--platform sim: needs --scenario FILE and --host NAME", ErrorCode::invalid_input};
    auto sc = platform::load_scenario(scenario);
    if (!sc) return Error{sc.error().message, ErrorCode::invalid_input};
    return platform::make_sim_node(*sc, host, 0);
  }
  return Error{"--platform: '" + f.platform + "' is not one of qemu, libvirt, exec, sim", ErrorCode::invalid_input};
}

}  // namespace memlend::cli
