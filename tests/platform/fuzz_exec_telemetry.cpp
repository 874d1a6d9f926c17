// libFuzzer target: the exec backend's telemetry parser fed whatever a hook
// might print. Whatever comes, the answer is a reading that keeps the schema's
// promises (names usable as a hook's arguments, sorted and unique; sizes in
// range) or one printable line, never a crash, an exception or a deep stack.
#include "firmware_hooks/exec.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

using namespace memlend;
using namespace memlend::platform;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

void usable_name(const std::string& name) {
  require(!name.empty() && name.size() <= 255 && name.front() != '-');
  for (unsigned char c : name) require(c >= 0x20 && c != 0x7f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto r = parse_exec_telemetry(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!r) {
    const std::string& m = r.error().message;
    require(m.rfind("telemetry: ", 0) == 0);
    for (unsigned char c : m) require(c >= 0x20 && c != 0x7f);
    require(r.error().code == ErrorCode::invalid_input || r.error().code == ErrorCode::refused);
    return 0;
  }
  usable_name(r->host.name);
  require(r->host.cpus >= 1 && r->host.available_mib <= r->host.memory_mib && r->host.available_mib >= 0);
  for (std::size_t i = 0; i < r->vms.size(); ++i) {
    const VmReading& vm = r->vms[i];
    usable_name(vm.name);
    require(i == 0 || r->vms[i - 1].name < vm.name);
    require(vm.memory_mib >= 0 && vm.vcpus >= 0 && vm.plugged_mib >= 0 && vm.plugged_mib <= vm.pluggable_mib);
    require(!vm.cpu_s || *vm.cpu_s >= 0);
  }
  return 0;
}
