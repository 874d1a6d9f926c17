// Scenarios written in code for the policy tests, and short ways to read a
// decision back (names rather than ids, so a failure reads like the case).
#pragma once

#include "policy/model.hpp"
#include "policy/cluster.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace memlend::test {

inline constexpr std::int64_t GiB = 1024;  // in MiB
inline constexpr std::int64_t GHz = 1000;  // in MHz

class ScenarioBuilder {
 public:
  // The returned reference is good until the next host is added.
  policy::Host& host(const std::string& name, std::int64_t mem_mib, std::int64_t cpu_mhz) {
    policy::Host h;
    h.name = name;
    h.memory_mib = mem_mib;
    h.cpu_mhz = cpu_mhz;
    s.hosts.push_back(h);
    return s.hosts.back();
  }

  policy::Vm& vm(const std::string& name, const std::string& host, std::int64_t mem_mib, std::int64_t cpu_mhz) {
    policy::Vm v;
    v.name = name;
    v.host = id(host);
    v.memory_mib = mem_mib;
    v.cpu_mhz = cpu_mhz;
    s.vms.push_back(v);
    return s.vms.back();
  }

  // `vm` borrows `mib` from `donor` already.
  void borrows(const std::string& vm, const std::string& donor, std::int64_t mib) {
    s.vms.at(*s.find_vm(vm)).remote.push_back({id(donor), mib});
  }

  policy::HostId id(const std::string& host) const {
    auto h = s.find_host(host);
    if (!h) throw std::invalid_argument("no host " + host);
    return *h;
  }

  policy::Settings& settings() { return s.settings; }

  policy::Scenario s;
};

// "A 8192, N 8192": the leases of a decision, by donor name.
template <class Cluster>
std::string leases(const Cluster& c, const policy::Decision& d) {
  std::string out;
  for (const auto& l : d.leases) {
    if (!out.empty()) out += ", ";
    out += c.hosts()[l.donor].name + " " + std::to_string(l.mib);
  }
  return out;
}

// The same for what a VM borrows now.
template <class Cluster>
std::string borrowed(const Cluster& c, policy::VmId v) {
  std::string out;
  for (const auto& p : c.vm(v).borrowed) {
    if (!out.empty()) out += ", ";
    out += c.hosts()[p.donor].name + " " + std::to_string(p.mib);
  }
  return out;
}

template <class Cluster>
std::string name_of(const Cluster& c, policy::HostId h) {
  return h == policy::no_host ? std::string("(none)") : c.hosts()[h].name;
}

template <class Cluster>
const policy::Decision& decision_for(const Cluster& c, const std::vector<policy::Decision>& ds,
                                     const std::string& vm) {
  for (const auto& d : ds)
    if (c.vm_names()[d.vm] == vm) return d;
  throw std::invalid_argument("no decision for " + vm);
}

}  // namespace memlend::test
