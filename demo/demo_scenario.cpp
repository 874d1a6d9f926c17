#include "demo/demo_scenario.hpp"

namespace memlend::demo {

// Fabric fig2 is the patent's FIG. 2 (A 16 GiB/32 GHz, B 128 GiB/8 GHz,
// N 16 GiB/8 GHz); fabric fig3 is FIG. 3 (three 16 GiB/8 GHz hosts).
//   t=30    VM2 on A2 grows to 64 GiB: B2 lends 48 GiB (FIG. 2)
//   t=45    VM4 on B3 grows to 32 GiB, spread: A3 and N3 lend 8 GiB each (FIG. 3)
//   t=60    VM5 on N2 grows to 20 GiB: B2 lends 4 GiB, and 600 s later memlend
//           recommends moving VM5 to B2, which can hold all of it
//   t=200   VM6 on N3 needs 10 GHz: it moves to A2, which has the CPU but no
//           memory left, so its memory is lent to it there
//   t=900   A3 fails: VM4's 8 GiB is served from its mirror, then re-homed
//   t=1000  A3 comes back and may lend again
//   t=1100  VM2 falls back to 12 GiB: its lease and mirror are released
//   t=1150  N2 fails: B2 reclaims what it lent VM5, the mirror is deleted
std::string_view builtin_demo_scenario() {
  return R"({
  "settings": { "page_size_kib": 4, "rdma_block_kib": 1024, "buffer_blocks": 1,
                "placement": "best_fit", "order": "listed", "donors": "fewest",
                "migrate_after_s": 600, "detect_samples": 3, "sample_period_s": 10 },
  "hosts": [
    { "name": "A2", "memory_mib": 16384,  "cpu_mhz": 32000, "fabric": "fig2" },
    { "name": "B2", "memory_mib": 131072, "cpu_mhz": 8000,  "fabric": "fig2" },
    { "name": "N2", "memory_mib": 16384,  "cpu_mhz": 8000,  "fabric": "fig2" },
    { "name": "A3", "memory_mib": 16384,  "cpu_mhz": 8000,  "fabric": "fig3" },
    { "name": "B3", "memory_mib": 16384,  "cpu_mhz": 8000,  "fabric": "fig3" },
    { "name": "N3", "memory_mib": 16384,  "cpu_mhz": 8000,  "fabric": "fig3" }
  ],
  "vms": [
    { "name": "VM2", "host": "A2", "memory_mib": 12288, "cpu_mhz": 16000 },
    { "name": "VM3", "host": "B2", "memory_mib": 16384, "cpu_mhz": 4000 },
    { "name": "VM5", "host": "N2", "memory_mib": 12288, "cpu_mhz": 2000 },
    { "name": "VM4", "host": "B3", "memory_mib": 16384, "cpu_mhz": 4000, "donors": "spread" },
    { "name": "VM6", "host": "N3", "memory_mib": 4096,  "cpu_mhz": 6000 }
  ],
  "events": [
    { "at_s": 30,   "vm": "VM2", "memory_mib": 65536 },
    { "at_s": 45,   "vm": "VM4", "memory_mib": 32768 },
    { "at_s": 60,   "vm": "VM5", "memory_mib": 20480 },
    { "at_s": 200,  "vm": "VM6", "cpu_mhz": 10000 },
    { "at_s": 900,  "host": "A3", "up": false },
    { "at_s": 1000, "host": "A3", "up": true },
    { "at_s": 1100, "vm": "VM2", "memory_mib": 12288 },
    { "at_s": 1150, "host": "N2", "up": false }
  ]
}
)";
}

}  // namespace memlend::demo
