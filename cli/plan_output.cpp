#include "cli/plan_output.hpp"

namespace memlend::cli {

using json = nlohmann::ordered_json;
using namespace memlend::policy;

json decision_json(const Cluster& c, const Decision& d) {
  json leases = json::array();
  for (const auto& l : d.leases)
    leases.push_back({{"donor", c.hosts()[l.donor].name},
                      {"mib", l.mib},
                      {"transport", std::string(to_string(l.transport))}});
  json out = {
      {"vm", c.vm_names()[d.vm]},
      {"host", c.hosts()[d.host].name},
      {"kind", std::string(to_string(d.kind))},
      {"extra_memory_mib", d.extra_memory_mib},
      {"extra_cpu_mhz", d.extra_cpu_mhz},
      {"leases", leases},
      {"local_mib", d.local_mib},
      {"buffer_kib", d.buffer_kib},
      {"mirror", d.mirror_mib > 0 ? json{{"mib", d.mirror_mib}} : json(nullptr)},
      {"target", d.target == no_host ? json(nullptr) : json(c.hosts()[d.target].name)},
      {"reason", d.reason},
  };
  return out;
}

json plan_json(const Cluster& c, const std::vector<Decision>& ds) {
  json arr = json::array();
  for (const auto& d : ds) arr.push_back(decision_json(c, d));
  return json{{"decisions", arr}};
}

std::string decision_line(const Cluster& c, const Decision& d) {
  return c.vm_names()[d.vm] + " on " + c.hosts()[d.host].name + ": " + std::string(to_string(d.kind)) +
         ": " + d.reason;
}

}  // namespace memlend::cli
