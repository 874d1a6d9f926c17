// A node of an open cluster played by the exec backend: its hooks are shell
// scripts standing in for a vendor's firmware, for the tests of clusters of
// real nodes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace memlend::test {

namespace fs = std::filesystem;

// Quick settings for a test on real time; the hosts are whoever joins.
inline const char* open_settings = R"({ "settings": { "sample_period_s": 2, "detect_samples": 2, "migrate_after_s": 100000 },
                            "hosts": [] })";

inline void write_hook(const fs::path& file, const std::string& body) {
  std::ofstream(file) << "#!/bin/sh\nset -eu\n" << body << "\n";
  fs::permissions(file, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
}

// A node's firmware in four hooks. Its one VM (if any) has 4 GiB of boot
// memory and an 8 GiB virtio-mem device; its guest keeps `avail` MiB plus
// whatever is plugged available, and every plug and unplug is written down.
inline void make_node(const fs::path& dir, const std::string& host, std::int64_t memory_mib, std::int64_t available_mib,
               const std::string& vm, std::int64_t avail) {
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec);
  std::string state = (dir / "plugged").string();
  std::string vms;
  if (!vm.empty())
    vms = R"({"name": ")" + vm + R"(", "memory_mib": 4096, "vcpus": 2, "plugged_mib": $p, "pluggable_mib": 8192,
             "guest_available_mib": $((p + )" + std::to_string(avail) + R"()), "major_faults": 0, "cpu_s": 1})";
  write_hook(dir / "telemetry", "p=$(cat " + state + " 2>/dev/null || echo 0)\ncat <<JSON\n" +
                                    R"({"version": 1, "host": {"name": ")" + host + R"(", "memory_mib": )" +
                                    std::to_string(memory_mib) + R"(, "available_mib": )" +
                                    std::to_string(available_mib) + R"(, "cpus": 4, "cpu_mhz": 8000},
 "vms": [)" + vms + "]}\nJSON");
  // attach VM LEASE DONOR DONOR_ADDRESS MIB
  write_hook(dir / "attach", "echo \"attach $*\" >> " + (dir / "plugs.log").string() + "\np=$(cat " + state +
                                 " 2>/dev/null || echo 0)\necho $((p + $5)) > " + state);
  write_hook(dir / "detach", "echo \"detach $*\" >> " + (dir / "plugs.log").string() + "\np=$(cat " + state +
                                 " 2>/dev/null || echo 0)\necho $((p - $5)) > " + state);
}

}  // namespace memlend::test
