// What an operator hands memlend: files it names (a scenario, a config file,
// a secret), read whole and bounded, and values echoed back in messages.
#pragma once

#include "core/expected.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>

namespace memlend {

// A value from a file or a flag, echoed in a message: its first `most` bytes
// and how long it was. A file may hold a 100 MB name, and the message is for
// a person. The cut does not split a UTF-8 character.
inline std::string clip(std::string_view value, std::size_t most = 64) {
  if (value.size() <= most) return std::string(value);
  std::size_t cut = most;
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xc0) == 0x80) --cut;
  return std::string(value.substr(0, cut)) + "... (" + std::to_string(value.size()) + " bytes)";
}

// Bounds on what is read: far above any real file of the kind, far below what
// would exhaust a host's memory once parsed.
inline constexpr std::size_t max_scenario_bytes = std::size_t{64} << 20;  // ~450,000 hosts, a VM on each
inline constexpr std::size_t max_config_bytes = std::size_t{1} << 20;
inline constexpr std::size_t max_secret_bytes = std::size_t{1} << 20;

// Reads the regular file at `path`, at most `max_bytes` of it. A path that
// names anything else is refused without reading from it: /dev/zero or
// /dev/urandom never end, a FIFO blocks until a writer comes, a directory is
// a mistake. The file is opened once, without blocking (a FIFO would wait for
// a writer at open), and examined through that descriptor, so it cannot be
// swapped between the check and the read. `what` names the file in messages
// ("PATH: is a FIFO; the scenario file must be a regular file"). `opened`,
// when given, receives what fstat said of the file read (its mode, for a
// secret).
inline Expected<std::string> read_input_file(const std::string& path, const std::string& what,
                                             std::size_t max_bytes, struct stat* opened = nullptr) {
  const std::string where = clip(path, 256) + ": ";
  auto failed = [&](const char* doing) {
    return Error{where + "cannot " + doing + " the " + what + " (" + std::strerror(errno) + ")"};
  };
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return failed("open");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return failed("read");
  if (opened) *opened = st;
  if (!S_ISREG(st.st_mode)) {
    const char* kind = S_ISDIR(st.st_mode)    ? "a directory"
                       : S_ISFIFO(st.st_mode) ? "a FIFO"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "a special file";
    return Error{where + "is " + kind + "; the " + what + " must be a regular file"};
  }
  auto too_large = [&] {
    std::string limit = max_bytes % (1u << 20) == 0 ? std::to_string(max_bytes >> 20) + " MiB"
                        : max_bytes % (1u << 10) == 0 ? std::to_string(max_bytes >> 10) + " KiB"
                                                       : std::to_string(max_bytes) + " bytes";
    return Error{where + "is larger than the " + limit + " a " + what + " may hold"};
  };
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes) return too_large();
  // The size is a hint: the file may grow while it is read, so the bound is
  // enforced on what arrives.
  std::string text(static_cast<std::size_t>(st.st_size) + 1, '\0');
  std::size_t got = 0;
  for (;;) {
    if (got == text.size()) {
      if (got > max_bytes) return too_large();
      text.resize(std::min(std::max<std::size_t>(2 * got, 4096), max_bytes + 1));
    }
    ssize_t n = ::read(fd, &text[got], text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return failed("read");
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  if (got > max_bytes) return too_large();
  text.resize(got);
  return text;
}

}  // namespace memlend
