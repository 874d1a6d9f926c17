// A libFuzzer target for scenario files: they come from operators and from
// the tools that write them, so the parser, the checks behind it, the
// planner and the simulated platform must take any bytes and answer with a
// decision for every VM or one line saying what is wrong, never a crash, an
// overflow or a hang.
#include "policy/cluster.hpp"
#include "firmware_hooks/platform.hpp"
#include "scenario/scenario.hpp"

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace memlend;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto sc = platform::parse_scenario(text, "fuzz.json");
  if (!sc) {
    const std::string& why = sc.error().message;
    // One short printable line, escaped where it is made (parse_scenario).
    require(why.rfind("fuzz.json", 0) == 0 && why.size() < 4096);
    for (unsigned char c : why) require(c >= 0x20 && c != 0x7f);
    return 0;
  }
  // Big clusters are the benchmark's business; here each input must be quick.
  if (sc->hosts.size() > 64 || sc->vms.size() > 256 || sc->events.size() > 256) return 0;
  policy::Cluster cluster(*sc);
  auto decisions = cluster.plan();
  require(decisions.size() == sc->vms.size());
  for (const auto& d : decisions) require(!d.reason.empty());
  // The simulated platform replays the scenario's events to their end.
  auto sim = platform::make_sim(*sc);
  double end = sim->last_change_s();
  for (double t : {0.0, end / 2, end, end + 1}) sim->sample(t);
  return 0;
}
