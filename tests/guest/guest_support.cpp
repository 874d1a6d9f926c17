#include "tests/guest/guest_support.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <regex>
#include <stdexcept>

namespace memlend::test {

using namespace std::chrono_literals;

const GuestImage& image() {
  static const GuestImage g = guest_image(MEMLEND_GUEST_DIR);
  return g;
}

std::string why_no_guest() {
  if (::geteuid() != 0) return "booting a guest with its memory in a cgroup needs root";
  if (qemu_binary().empty()) return "no qemu-system-x86_64 (the qemu-system-x86 package)";
  if (!image().unavailable.empty()) return "no guest to boot: " + image().unavailable;
  return "";
}

std::string why_no_guest_in_a_cgroup() {
  auto why = why_no_guest();
  if (!why.empty()) return why;
  auto probe = cgroup::MemoryCgroup::create("memlend-probe-" + std::to_string(::getpid()), 64 * mib);
  return probe ? "" : "no memory cgroup to be had: " + probe.error().message;
}

std::string why_no_fuse() { return ::access("/dev/fuse", R_OK | W_OK) == 0 ? "" : "no /dev/fuse"; }

std::uint64_t field(const std::string& line, const std::string& key) {
  std::smatch m;
  std::regex re("\\b" + key + "=([0-9]+)");
  return std::regex_search(line, m, re) ? std::stoull(m[1]) : ~0ull;
}

std::string tail(const std::string& text, std::size_t n) {
  return text.size() <= n ? text : text.substr(text.size() - n);
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

Expected<std::unique_ptr<QemuGuest>> boot_and_plug(const PlugOptions& p) {
  QemuGuestOptions o;
  o.memory_file = p.memory_file;
  o.memdev_bytes = p.memdev;
  o.base_bytes = 256 * mib;
  o.cgroup_limit = p.cgroup_limit;
  o.kernel_args = "memlend.plug_mib=" + std::to_string(p.plug / mib) + " memlend.passes=2 memlend.wait_s=120 " +
                  "memlend.linger_s=300 " + p.kernel_args;
  auto guest = QemuGuest::start(image(), qemu_binary(), o);
  if (!guest) return guest.error();
  auto plugged = (*guest)->qmp().set_requested_size(o.device_id, p.plug, 180s);
  if (!plugged) return Error{plugged.error().message + "\n" + tail((*guest)->console()), plugged.error().code};
  return guest;
}

Expected<int> quit(QemuGuest& g) {
  // QEMU may close the connection before its answer is read.
  auto q = g.qmp().execute("quit");
  if (!q && q.error().code != ErrorCode::unavailable) return q.error();
  return g.wait_exit(30s);
}

LocalMemory::LocalMemory(std::uint64_t bytes) : dir("guest") {
  int fd = ::open(file().c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int error = fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0 ? errno : 0;
  if (fd >= 0) ::close(fd);
  if (error != 0) throw std::runtime_error("cannot make " + file() + ": " + std::strerror(error));
}

bool LocalMemory::in_ram() const {
  struct statfs s {};
  return ::statfs(dir.path().c_str(), &s) == 0 && s.f_type == 0x01021994;  // TMPFS_MAGIC
}

LentMemory::LentMemory(std::uint64_t memdev, bool mirror)
    : dir("guest-lent"), donor(dir, "donor", static_cast<int>(memdev / mib) + 64), mnt(dir.path() + "/mnt") {
  ::mkdir(mnt.c_str(), 0755);
  std::vector<std::string> argv{MEMLEND_BINARY, "mount", "--donor", donor.address, "--mib", std::to_string(memdev / mib),
                                "--mountpoint", mnt, "--secret-file", donor.secret_file, "--json"};
  if (mirror) argv.insert(argv.end(), {"--mirror-dir", dir.path()});
  mount = std::make_unique<Child>(argv, dir.path() + "/mount");
  if (mount->wait_stderr("serving ", 30s).empty()) throw std::runtime_error("memlend mount: " + mount->err());
}

nlohmann::json LentMemory::counters() {
  int status = mount->stop();
  if (status != 0)
    throw std::runtime_error("memlend mount ended with " + std::to_string(status) + ": " + mount->err());
  return last_json_line(mount->out());
}

}  // namespace memlend::test
