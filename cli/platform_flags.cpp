#include "cli/platform_flags.hpp"

#include "firmware_hooks/exec.hpp"
#include "firmware_hooks/libvirt.hpp"
#include "firmware_hooks/qemu.hpp"
#include "scenario/scenario.hpp"

#include <spdlog/spdlog.h>

namespace memlend::cli {

void add_platform_flags(CLI::App& cmd, PlatformFlags& f) {
  cmd.add_option("--platform", f.platform,
                 "What this node's VMs run on: qemu (QMP sockets in --qmp-dir), libvirt (--libvirt-uri), exec "
                 "(vendor hooks in --hooks-dir) or sim (a host of --scenario)")
      ->type_name("{qemu,libvirt,exec,sim}");
  cmd.add_option("--qmp-dir", f.qmp_dir, "qemu: the VMs' QMP sockets for memlend, one NAME.qmp per VM")
      ->type_name("DIR")
      ->capture_default_str();
  cmd.add_option("--libvirt-uri", f.libvirt_uri, "libvirt: the connection URI")->capture_default_str();
  cmd.add_option("--hooks-dir", f.hooks_dir, "exec: the vendor's hook executables")
      ->type_name("DIR")
      ->capture_default_str();
  cmd.add_option("--hook-timeout", f.hook_timeout, "exec: how long a hook may run, e.g. 10s")->capture_default_str();
}

void add_receive_flags(CLI::App& cmd, PlatformFlags& f) {
  cmd.add_option("--qemu-incoming", f.qemu_incoming,
                 "qemu: the program that starts this node's incoming QEMU when memlend moves a VM here, run as "
                 "PROGRAM VM (default: none, no VM is moved here)")
      ->type_name("PROGRAM");
  cmd.add_option("--libvirt-migrate-uri", f.libvirt_migrate_uri,
                 "libvirt: the URI other nodes' libvirt migrates VMs to this node by, e.g. "
                 "qemu+tls://node-b/system (default: none, no VM is moved here)")
      ->type_name("URI");
}

Expected<std::unique_ptr<platform::NodePlatform>> open_platform(const PlatformFlags& f, const std::string& scenario,
                                                                const std::string& host) {
  auto warn = [](const std::string& line) { spdlog::warn("{}", line); };
  if (f.platform.empty())
    return Error{"--platform: required (qemu, libvirt, exec or sim)", ErrorCode::invalid_input};
  if (f.platform == "sim") {
    if (scenario.empty() || host.empty())
      return Error{"--platform sim: needs --scenario FILE and --host NAME", ErrorCode::invalid_input};
    auto sc = platform::load_scenario(scenario);
    if (!sc) return Error{sc.error().message, ErrorCode::invalid_input};
    return platform::make_sim_node(*sc, host, 0);
  }
  if (f.platform == "qemu") {
    if (f.qmp_dir.empty()) return Error{"--qmp-dir: empty", ErrorCode::invalid_input};
    platform::QemuOptions o;
    o.qmp_dir = f.qmp_dir;
    o.log = warn;
    if (!f.qemu_incoming.empty() && f.qemu_incoming.front() != '/')
      return Error{"--qemu-incoming: '" + f.qemu_incoming + "' is not an absolute path", ErrorCode::invalid_input};
    o.incoming_program = f.qemu_incoming;
    return platform::make_qemu(o);
  }
  if (f.platform == "libvirt") {
    platform::LibvirtOptions o;
    o.uri = f.libvirt_uri;
    o.migrate_uri = f.libvirt_migrate_uri;
    o.warn = warn;
    auto p = platform::make_libvirt(o);
    if (!p) return Error{"--libvirt-uri " + f.libvirt_uri + ": " + p.error().message, p.error().code};
    return p;
  }
  if (f.platform == "exec") {
    auto timeout = parse_duration(f.hook_timeout);
    if (!timeout || *timeout <= 0 || *timeout > 3600)
      return Error{"--hook-timeout: '" + f.hook_timeout + "' is not a duration of at most an hour",
                   ErrorCode::invalid_input};
    if (f.hooks_dir.empty() || f.hooks_dir.front() != '/')
      return Error{"--hooks-dir: '" + f.hooks_dir + "' is not an absolute path", ErrorCode::invalid_input};
    platform::ExecOptions o;
    o.hooks_dir = f.hooks_dir;
    o.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(*timeout * 1000));
    auto p = platform::make_exec(o);
    if (!p) return Error{"--hooks-dir " + f.hooks_dir + ": " + p.error().message, p.error().code};
    return p;
  }
  return Error{"--platform: '" + f.platform + "' is not one of qemu, libvirt, exec, sim", ErrorCode::invalid_input};
}

}  // namespace memlend::cli
