// libFuzzer target: the QMP client fed whatever a QEMU (or anything listening
// on its socket) might send. The input goes through a real socket, as QEMU's
// bytes do, and the client runs its whole handshake and the virtio-mem calls
// on it; every line is also given to the parser alone. Whatever comes, each
// call ends (the peer's end is shut, so no wait outlasts the input) with a
// value or one printable line, never a crash.
#include "firmware_hooks/qmp.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace memlend;

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

template <class T>
void check(const Expected<T>& r) {
  if (r) return;
  const std::string& m = r.error().message;
  require(!m.empty());
  for (unsigned char c : m) require(c >= 0x20 && c != 0x7f);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  for (std::size_t at = 0; at <= input.size();) {
    auto end = input.find('\n', at);
    if (end == std::string_view::npos) end = input.size();
    check(qmp::parse_line(input.substr(at, end - at)));
    at = end + 1;
  }

  int fds[2];
  require(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  // Small limits, so that short inputs reach the long-line and deep-nesting refusals.
  qmp::Limits limits;
  limits.max_line = 512;
  limits.max_depth = 8;
  limits.max_events = 4;
  // A socket's buffer holds far more than -max_len allows: all of it is there
  // before the client reads, and then the end of the stream.
  std::size_t sent = std::min<std::size_t>(size, 64 * 1024);
  require(::write(fds[1], data, sent) == static_cast<ssize_t>(sent));
  ::shutdown(fds[1], SHUT_WR);
  auto client = qmp::Client::over(fds[0], qmp::Millis(1000), limits);
  check(client);
  if (client) {
    check(client->execute("query-memory-devices"));
    check(client->memory_device_size("vm0"));
    check(client->set_requested_size("vm0", 1 << 20, qmp::Millis(1000)));
    check(client->wait_event("MEMORY_DEVICE_SIZE_CHANGE", qmp::Millis(1000)));
    require(client->take_events().size() <= limits.max_events);
  }
  ::close(fds[1]);
  return 0;
}
