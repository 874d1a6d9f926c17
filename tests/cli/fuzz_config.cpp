// A libFuzzer target for config files (/etc/memlend/memlend.conf is edited by
// hand): any bytes end in options set or one short printable line naming the
// file and what is wrong, never a crash.
#include "cli/config_file.hpp"

#include <cstdint>
#include <cstdlib>
#include <string>
#include <sys/mman.h>
#include <unistd.h>

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

// apply_config_file's errors are one printable line where they are made, as
// parse_scenario's are: a caller may log them as they are. (The CLI also
// escapes what it prints; this target checks the parser's own promise.)
bool printable_line(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return !s.empty();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A memfd: the bytes reach the parser through a real file, without a disk.
  static int fd = memfd_create("memlend.conf", 0);
  require(fd >= 0);
  require(ftruncate(fd, 0) == 0);
  require(pwrite(fd, data, size, 0) == static_cast<ssize_t>(size));
  const std::string path = "/proc/self/fd/" + std::to_string(fd);

  // Options of each kind a memlend command has, and a sibling command whose
  // keys the file may also hold.
  CLI::App app("memlend");
  auto* run = app.add_subcommand("run");
  std::string scenario, level;
  double speed = 1;
  std::uint64_t kib = 0;
  bool quiet = false;
  std::vector<std::string> agents;
  run->add_option("--scenario", scenario);
  run->add_option("--speed", speed)->check(CLI::PositiveNumber);
  run->add_option("--data-kib-per-gib", kib);
  run->add_option("--log-level", level)->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  run->add_option("--agents", agents);
  run->add_flag("--quiet", quiet);
  auto* donor = app.add_subcommand("donor");
  std::string listen;
  donor->add_option("--listen", listen);

  auto err = memlend::cli::apply_config_file(*run, path);
  if (err) require(printable_line(err->message) && err->message.size() < 4096);
  return 0;
}
