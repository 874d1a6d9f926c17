// libFuzzer target: the libvirt backend's reading of a domain's XML, fed
// whatever a libvirt daemon (or whatever answers on its socket) might send.
// Every input is parsed, and its first virtio-mem device, if any, is given a
// new requested size; each ends with a value or one printable line, never a
// crash, and an update that succeeds reads back as the size it was given.
#include "firmware_hooks/libvirt.hpp"

#include "core/text.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>

using namespace memlend;
using namespace memlend::platform;

namespace {

// An error's message is one printable line: what core's one_line leaves as it is.
template <class T>
bool well_formed(const Expected<T>& r) {
  return r || (!r.error().message.empty() && one_line(r.error().message) == r.error().message);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string xml(reinterpret_cast<const char*>(data), size);
  const std::uint64_t requested = (std::uint64_t{size} % 4096) << 20;
  auto update = virtio_mem_update_xml(xml, 0, requested);
  if (!well_formed(parse_domain_xml(xml)) || !well_formed(update)) std::abort();
  if (!update) return 0;
  auto back = parse_domain_xml("<domain><devices>" + *update + "</devices></domain>");
  if (!well_formed(back) || (back && (back->virtio_mem.size() != 1 || back->virtio_mem[0].requested != requested)))
    std::abort();
  return 0;
}
