#include "tests/support/qemu_guest.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace memlend::test {

namespace fs = std::filesystem;

GuestImage guest_image(const std::string& dir) {
  GuestImage g;
  std::error_code ec;
  if (fs::exists(dir + "/unavailable", ec)) {
    g.unavailable = read_file(dir + "/unavailable");
    while (!g.unavailable.empty() && g.unavailable.back() == '\n') g.unavailable.pop_back();
    return g;
  }
  g.kernel = dir + "/vmlinuz";
  g.initramfs = dir + "/initramfs.cpio.gz";
  if (!fs::exists(g.kernel, ec) || !fs::exists(g.initramfs, ec))
    g.unavailable = "no guest kernel and initramfs in " + dir + " (the build's guest_image target makes them)";
  return g;
}

std::string qemu_binary() {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string d; std::getline(dirs, d, ':');) {
    std::string candidate = d + "/qemu-system-x86_64";
    if (!d.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

Expected<std::unique_ptr<QemuGuest>> QemuGuest::start(const GuestImage& image, const std::string& qemu,
                                                      QemuGuestOptions options, std::chrono::milliseconds timeout) {
  constexpr std::uint64_t mib = 1 << 20;
  std::unique_ptr<QemuGuest> g(new QemuGuest);
  g->options_ = options;
  g->dir_ = make_temp_dir("qemu");
  Child::Options child_options(g->dir_ + "/qemu");  // qemu.out is the console
  if (options.cgroup_limit > 0) {
    // Unique on the machine, so that guests of one test or of tests side by side never share one.
    static std::atomic<int> count{0};
    auto group = cgroup::MemoryCgroup::create(
        "memlend-qemu-" + std::to_string(::getpid()) + "-" + std::to_string(count++), options.cgroup_limit);
    if (!group) return group.error();
    g->cgroup_.emplace(std::move(*group));
    child_options.cgroup_procs = g->cgroup_->procs_file();
  }
  std::string qmp_socket = g->dir_ + "/qmp.sock";
  // QEMU's option syntax doubles a comma that belongs to a value.
  std::string mem_path;
  for (char c : options.memory_file) mem_path += c == ',' ? std::string(",,") : std::string(1, c);
  std::string append = "console=ttyS0 memhp_default_state=online_movable panic=-1 " + options.kernel_args;
  std::vector<std::string> argv = {
      qemu, "-accel", "tcg,tb-size=" + std::to_string(options.tb_mib), "-M", "q35", "-cpu", "max", "-smp",
      std::to_string(options.vcpus),
      "-m",
      std::to_string(options.base_bytes / mib) + "M,maxmem=" +
          std::to_string((options.base_bytes + options.memdev_bytes) / mib) + "M,slots=1",
      // Nothing but what the test asks for: no network card, no display, no
      // monitor; a kernel panic ends QEMU instead of rebooting the guest.
      "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none", "-no-reboot", "-serial", "stdio",
      "-qmp", "unix:" + qmp_socket + ",server=on,wait=off",
      "-object",
      "memory-backend-file,id=lent,share=on,mem-path=" + mem_path +
          ",size=" + std::to_string(options.memdev_bytes / mib) + "M",
      // The guest boots with nothing plugged: the test plugs through QMP.
      "-device", "virtio-mem-pci,id=" + options.device_id + ",memdev=lent,requested-size=0",
      "-kernel", image.kernel, "-initrd", image.initramfs, "-append", append};
  for (const auto& socket : options.extra_qmp) argv.insert(argv.end(), {"-qmp", "unix:" + socket + ",server=on,wait=off"});
  if (options.balloon) argv.insert(argv.end(), {"-device", "virtio-balloon-pci,id=balloon0"});
  if (!options.incoming.empty()) argv.insert(argv.end(), {"-incoming", options.incoming});
  argv.insert(argv.begin(), options.launcher.begin(), options.launcher.end());
  try {
    g->child_ = std::make_unique<Child>(argv, child_options);
  } catch (const std::exception& e) {
    return Error{std::string("QEMU: ") + e.what(), ErrorCode::failed};
  }
  // Asked in short turns, so that a QEMU that refused its arguments is told at once.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto client = qmp::Client::connect(qmp_socket, std::chrono::milliseconds(200));
    if (client) {
      g->qmp_.emplace(std::move(*client));
      return g;
    }
    if (!g->child_->running())
      return Error{"QEMU ended at once: " + one_line(g->child_->err()), ErrorCode::failed};
    if (std::chrono::steady_clock::now() >= deadline)
      return Error{"QEMU's QMP: " + client.error().message, ErrorCode::failed};
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

QemuGuest::~QemuGuest() {
  qmp_.reset();
  if (child_) child_->stop(5);
  child_.reset();
  cgroup_.reset();
  std::error_code ec;
  if (!dir_.empty()) fs::remove_all(dir_, ec);
}

std::string QemuGuest::wait_line(const std::string& needle, std::chrono::milliseconds timeout) {
  return child_->wait_stdout(needle, timeout);
}

std::string QemuGuest::console() const { return child_->out(); }

int QemuGuest::wait_exit(std::chrono::milliseconds timeout) { return child_->wait(timeout); }

pid_t QemuGuest::pid() const { return child_->pid(); }

QemuGuest::Rss QemuGuest::rss() const {
  Rss r;
  std::ifstream in("/proc/" + std::to_string(child_->pid()) + "/status");
  for (std::string line; std::getline(in, line);) {
    auto value = [&](const char* key) { return std::strtol(line.c_str() + std::string(key).size(), nullptr, 10); };
    if (line.rfind("RssAnon:", 0) == 0) r.anon_kib = value("RssAnon:");
    if (line.rfind("RssFile:", 0) == 0) r.file_kib = value("RssFile:");
    if (line.rfind("RssShmem:", 0) == 0) r.shmem_kib = value("RssShmem:");
    if (line.rfind("VmHWM:", 0) == 0) r.peak_kib = value("VmHWM:");
  }
  return r;
}

}  // namespace memlend::test
