// The `libvirt` backend of NodePlatform, through libvirt's C API: a node whose
// VMs libvirt keeps (virtqemud or libvirtd, on this host or over a remote URI).
//
// Lent memory reaches a guest through its virtio-mem device, whose memory is
// the file memlend's data plane serves (memory-backend-file, share=on, as
// libvirt makes it from <memoryBacking><source type='file'/>); attach and
// detach only change the device's <requested> size, as a live device update.
//
// What bounds a wait: a connection to a daemon runs libvirt's keepalive (on
// libvirt's event loop, run by a thread of this process), so a call to a
// daemon that stopped answering fails after keepalive_interval ×
// (keepalive_count + 1); a daemon that answers bounds its own calls (the qemu
// driver waits at most 30 s for a VM's job lock). A migration that is still
// running at migration_timeout is cancelled (virDomainAbortJob) and the VM
// stays here. Opening a connection is bounded by the transport: a unix socket
// connects or fails at once, a TCP or SSH URI by its connect timeout.
#pragma once

#include "core/expected.hpp"
#include "firmware_hooks/node.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace memlend::platform {

struct LibvirtOptions {
  // Any libvirt URI: qemu:///system on the node, test:///default in a test.
  std::string uri = "qemu:///system";
  // The node's name in readings; empty: what libvirt says the hostname is.
  std::string host_name;
  std::chrono::seconds keepalive_interval{5};
  unsigned keepalive_count = 3;
  std::chrono::seconds migration_timeout{600};
  // The URI another node's libvirt migrates a VM to this node by, e.g.
  // qemu+tls://node-b.example/system (empty: this node takes no
  // migrations). Peer-to-peer: the other libvirtd starts the incoming QEMU.
  std::string migrate_uri;
  // How often the guest's balloon driver refreshes its statistics; a reading
  // is at most this old.
  std::chrono::seconds stats_period{5};
  // A domain's XML from libvirt is a few KiB; past this it is not parsed.
  std::size_t max_domain_xml = 4 << 20;
  // Told why a VM was left out of a reading (a VM that cannot be read is not
  // an error of the whole reading); the caller's logger.
  std::function<void(const std::string&)> warn;
};

// Opens the connection (read-write). The platform is used by one thread (a
// migration's watchdog aside, which only cancels). ErrorCode::unavailable, with libvirt's
// own message, when the daemon cannot be reached. Nothing is printed: libvirt's
// errors come back as values only.
Expected<std::unique_ptr<NodePlatform>> make_libvirt(LibvirtOptions options);

// A virtio-mem device as the domain's XML describes it. Sizes in bytes.
struct VirtioMem {
  std::uint64_t size = 0;       // the most it may plug
  std::uint64_t block = 0;      // the unit of a change; 0 when not given
  std::uint64_t requested = 0;  // what the guest is asked to have plugged
  std::uint64_t current = 0;    // what the guest has plugged now
};

struct DomainXml {
  std::vector<VirtioMem> virtio_mem;  // in document order
  bool balloon = false;               // a <memballoon> whose model is not 'none'
};

// Parses what read() needs from a domain's XML; ErrorCode::invalid_input for
// XML that is not a domain or a size that is not one. Exposed for the tests.
Expected<DomainXml> parse_domain_xml(const std::string& xml, std::size_t max_bytes = LibvirtOptions{}.max_domain_xml);

// The XML of the domain's `index`-th virtio-mem device (as it is in `xml`, so
// that libvirt finds it by its alias and address) with <requested> set to
// `requested` bytes: what virDomainUpdateDeviceFlags is given.
Expected<std::string> virtio_mem_update_xml(const std::string& xml, std::size_t index, std::uint64_t requested,
                                            std::size_t max_bytes = LibvirtOptions{}.max_domain_xml);

}  // namespace memlend::platform
