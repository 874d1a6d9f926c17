// The `qemu` NodePlatform: the VMs of a node where QEMU runs them directly, as
// Proxmox VE's qemu-server does, driven through QMP the way qemu-server drives
// them, and the host read from /proc (host_proc.hpp).
//
// VMs are the `NAME.qmp` sockets in one directory, NAME being the VM's name
// (Proxmox's VM id). QEMU serves one client per QMP socket and qemu-server
// holds its own (/var/run/qemu-server/ID.qmp), so each VM needs a second QMP
// socket for memlend, e.g. in Proxmox's `args:`
//   -chardev socket,id=memlend,path=/run/memlend/qmp/ID.qmp,server=on,wait=off
//   -mon chardev=memlend,mode=control
// VMs come and go while memlend runs: every read() rescans the directory,
// connects to the sockets it has not met (each within a bounded time), and
// drops those gone or dead. A socket file with no QEMU behind it (a QEMU that
// was killed leaves it) is skipped and logged, as is a VM that does not answer.
//
// What is read per VM: QEMU's pid from the socket's peer credentials (then its
// CPU seconds, RSS and cgroup throttling from /proc), query-status,
// query-memory-size-summary, query-memory-devices (the virtio-mem device),
// query-cpus-fast, query-balloon and, where a virtio-balloon device is, its
// guest-stats (polled by QEMU every stats_interval, set once per VM).
//
// attach/detach move the virtio-mem device's requested-size by the lent size
// and wait for the guest's driver to plug or unplug it; the memory behind the
// device is memlend's data plane's file, which the platform never touches.
#pragma once

#include "firmware_hooks/node.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace memlend::platform {

struct QemuOptions {
  std::string qmp_dir = "/run/memlend/qmp";
  std::string host_name;  // the node's name; empty: its hostname
  // The virtio-mem device's id (`-device virtio-mem-pci,id=ID`); empty: each
  // VM's first virtio-mem device that has an id.
  std::string device_id;
  // A socket that accepts but never greets (another client holds it) costs
  // one read this long.
  std::chrono::milliseconds connect_timeout{2000};
  // How long a socket that did not answer is left out of reads before it is
  // tried again (attach and the others try at once).
  std::chrono::milliseconds retry_interval{30000};
  std::chrono::milliseconds command_timeout{5000};
  // The guest plugs and unplugs in steps; unplugging waits for it to move
  // what it keeps on the memory elsewhere.
  std::chrono::milliseconds plug_timeout{120000};
  std::chrono::milliseconds migrate_timeout{600000};
  // The target's side of a migration: the program that starts this node's
  // incoming QEMU for a VM (empty: this node takes no migrations). Run as
  // `PROGRAM VM` under the exec hooks' rules (program.hpp), it starts QEMU
  // with the VM's devices, `-incoming tcp:ADDRESS:PORT` and memlend's QMP
  // socket as NAME.qmp in qmp_dir, in a session of its own (QEMU's
  // -daemonize), and prints that tcp: URI as its first line once QEMU listens.
  std::string incoming_program;
  std::chrono::milliseconds incoming_timeout{60000};
  // How often QEMU asks the balloon driver for the guest's statistics.
  std::chrono::seconds stats_interval{10};
  // Where a VM skipped or dropped is told; empty: standard error.
  std::function<void(const std::string&)> log;
};

std::unique_ptr<NodePlatform> make_qemu(QemuOptions options = {});

}  // namespace memlend::platform
