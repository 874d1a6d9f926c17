// The planner's view of the cluster at one moment, as the metrics actor and
// tests read it: what each host uses and lends, what each VM has, the leases
// and the mirrors. Typed, so a renamed field is a compile error rather than a
// gauge that silently reads zero. Names, not ids: readers key their series
// by them.
#pragma once

#include "core/vocabulary.hpp"

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace memlend {

struct PlannerView {
  struct Host {
    std::string name;
    bool up = true;
    std::int64_t used_mib = 0;
    std::int64_t lent_mib = 0;
    std::int64_t lendable_mib = 0;
    std::int64_t used_cpu_mhz = 0;
    // Capacity: fixed for a scenario's host, its agent's facts for one that
    // joined (which a rejoin may change).
    std::int64_t memory_mib = 0;
    std::int64_t cpu_mhz = 0;
  };
  struct Vm {
    std::string name;
    std::string host;
    std::int64_t demand_mib = 0;
    std::int64_t local_mib = 0;
    std::int64_t borrowed_mib = 0;
    std::int64_t demand_cpu_mhz = 0;
    std::int64_t local_cpu_mhz = 0;
  };
  struct Lease {
    std::uint64_t id = 0;
    std::string vm;
    std::string donor;
    std::string recipient;
    std::int64_t mib = 0;
    LeaseState state = LeaseState::active;
  };
  struct Mirror {
    std::string vm;
    std::int64_t mib = 0;
    std::string path;
  };

  double t_s = 0;
  std::vector<Host> hosts;
  std::vector<Vm> vms;
  std::vector<Lease> leases;
  std::vector<Mirror> mirrors;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PlannerView::Host& x) {
  return f(caf::meta::type_name("memlend.planner_view.host"), x.name, x.up, x.used_mib, x.lent_mib, x.lendable_mib,
           x.used_cpu_mhz, x.memory_mib, x.cpu_mhz);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PlannerView::Vm& x) {
  return f(caf::meta::type_name("memlend.planner_view.vm"), x.name, x.host, x.demand_mib, x.local_mib,
           x.borrowed_mib, x.demand_cpu_mhz, x.local_cpu_mhz);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PlannerView::Lease& x) {
  auto check = caf::meta::load_callback(
      [&]() -> caf::error { return valid(x.state) ? caf::error{} : caf::make_error(caf::sec::invalid_argument); });
  return f(caf::meta::type_name("memlend.planner_view.lease"), x.id, x.vm, x.donor, x.recipient, x.mib, x.state,
           check);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PlannerView::Mirror& x) {
  return f(caf::meta::type_name("memlend.planner_view.mirror"), x.vm, x.mib, x.path);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, PlannerView& x) {
  return f(caf::meta::type_name("memlend.planner_view"), x.t_s, x.hosts, x.vms, x.leases, x.mirrors);
}

}  // namespace memlend
