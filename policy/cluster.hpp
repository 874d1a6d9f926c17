// The cluster's one view of free resources, and the decision of FIG. 5.
//
// A Cluster is built from a scenario (a snapshot: each host serves its VMs in
// scenario order until it runs out) and then changed one decision or one
// event at a time. It also grows: hosts that join and VMs first seen in
// telemetry are appended, so a HostId or VmId, once given, names the same
// host or VM for the rest of the run (and in the store). decide() never changes anything; apply() carries out a
// decision exactly as decided, so a decision that was refused half-way (a
// donor said no) leaves nothing behind.
//
// BasicCluster is a template over the host index so that the benchmark can run
// the same policy over the tree index and over a full rescan.
#pragma once

#include "policy/host_index.hpp"
#include "policy/model.hpp"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace memlend::policy {

struct HostState {
  std::int64_t used_mem = 0;  // local shares of its VMs
  std::int64_t used_cpu = 0;
  std::int64_t lent = 0;      // memory it lends to VMs elsewhere
  bool up = true;
};

struct VmState {
  HostId host = no_host;
  std::int64_t demand_mem = 0;
  std::int64_t demand_cpu = 0;
  std::int64_t share_mem = 0;   // its local share on `host`
  std::int64_t share_cpu = 0;
  std::vector<RemotePart> borrowed;  // one part per donor
  std::int64_t remote_for_s = 0;
  std::optional<DonorMode> donors;

  std::int64_t borrowed_mib() const;
  std::int64_t borrowed_from(HostId donor) const;
};

// A recommendation to move a VM to the donor that lends it most.
struct Recommendation {
  HostId target = no_host;
  bool ok = false;
  std::string reason;
  // What stands in the way ("cpu", "memory", "down", "nothing"), stable while
  // the reason's figures change, so a refusal is reported once.
  std::string blocker;
};

// The outcome of looking for donors for some memory.
struct DonorChoice {
  std::vector<LeaseGrant> leases;  // empty: none found, see reason
  std::string reason;
};

template <class Index>
class BasicCluster {
 public:
  explicit BasicCluster(const Scenario& s);

  const Settings& settings() const { return settings_; }
  const std::vector<Host>& hosts() const { return hosts_; }
  const std::vector<std::string>& vm_names() const { return vm_names_; }
  const HostState& host_state(HostId h) const { return state_[h]; }
  const VmState& vm(VmId v) const { return vms_[v]; }
  std::size_t vm_count() const { return vms_.size(); }

  // Memory the host's own VMs (and VMs migrating in) may still take: its
  // reserve counts here, what it lends does not.
  std::int64_t free_local(HostId h) const;
  // Memory it may lend: free_local less its reserve, and only when it is up
  // with a data path.
  std::int64_t lendable(HostId h) const;
  std::int64_t cpu_free(HostId h) const;
  bool can_donate(HostId h) const;

  // FIG. 5 for one VM, against the current view. Changes nothing.
  Decision decide(VmId v) const;
  // Carries the decision out on the view.
  void apply(const Decision& d);
  // Every VM decided in `settings.order`, each seeing what the decisions
  // before it took; the result is in scenario order.
  std::vector<Decision> plan();
  // The order plan() decides VMs in.
  std::vector<VmId> decision_order() const;

  // ---- run-time changes ----
  // A host that joined: appended, with nothing used and nothing lent.
  HostId add_host(const Host& h);
  // A known host's facts changed (its agent rejoined after an upgrade, say).
  // Its name, what its VMs use and what it lends stay; `up` is not a fact.
  void update_host(HostId id, const Host& facts);
  // A VM first seen on `v.host`, served from its host's free memory like the
  // scenario's VMs at the start. It borrows nothing yet: `v.remote` is ignored,
  // since a lease exists only once the planner has made one.
  VmId add_vm(const Vm& v);
  // A new demand sample. A VM keeps its local share as far as the new demand
  // allows (a hypervisor does not take memory from a running VM because an
  // earlier one grew); what it no longer needs goes back to its host.
  void set_demand(VmId v, std::int64_t mem, std::int64_t cpu);
  // Telemetry: what the VM wants and what its host gives it now. Ignored
  // while the view and the platform disagree on where the VM runs (a
  // migration is under way and the view leads).
  void observe(VmId v, HostId host, std::int64_t demand_mem, std::int64_t demand_cpu, std::int64_t local_mem,
               std::int64_t local_cpu);
  void set_remote_for(VmId v, std::int64_t seconds) { vms_[v].remote_for_s = seconds; }
  // Leases (donors, latest first) a VM can give back and still have its demand.
  std::vector<RemotePart> surplus(VmId v) const;
  // Returns memory lent by `donor` to `v` (all of it when mib is 0).
  void release(VmId v, HostId donor, std::int64_t mib = 0);
  void set_host_up(HostId h, bool up);
  // A new donor for memory `v` borrowed from a donor that failed: one donor
  // that takes all of it (its contents move whole), or none with the reason.
  DonorChoice rehome_choice(VmId v, HostId failed, std::int64_t mib) const;
  // Moves the lease to the new donors.
  void rehome(VmId v, HostId failed, const std::vector<LeaseGrant>& to);
  // Step 4: whether the VM should move to the donor that lends it most.
  Recommendation recommendation(VmId v) const;
  // What a VM needs beyond its local share and borrowed memory, counting what
  // its host could still give it locally: (memory, cpu), each >= 0.
  std::pair<std::int64_t, std::int64_t> need(VmId v) const;

  // Donors for `mib` in `fabric` by `mode`, none of them in `exclude`.
  DonorChoice choose_donors(std::int64_t mib, HostId recipient, DonorMode mode,
                            const std::vector<HostId>& exclude) const;

 private:
  Decision decide_remote(VmId v, Decision d) const;
  Decision decide_migrate(VmId v, Decision d) const;
  void refresh(HostId h);
  // Rebuilds every index from hosts_ and state_: their size, the fabrics and
  // the scale scores are normalised by all follow the hosts there are now.
  void reindex();
  Transport transport(HostId a, HostId b) const;
  std::string describe(const std::vector<LeaseGrant>& leases) const;

  Settings settings_;
  std::vector<Host> hosts_;
  std::vector<std::string> vm_names_;
  std::vector<HostState> state_;
  std::vector<VmState> vms_;
  std::int64_t max_mem_ = 1;
  std::int64_t max_cpu_ = 1;
  // Migration targets: every up host, by (free_local, cpu_free).
  Index targets_;
  // Donors, one index per fabric: every host that can donate, by (lendable, cpu_free).
  std::vector<Index> donors_;
  std::vector<std::uint32_t> fabric_of_;  // each host's fabric: its place in donors_
  std::map<std::string, std::vector<HostId>> fabric_hosts_;
};

using Cluster = BasicCluster<HostIndex>;
using ScanCluster = BasicCluster<LinearHostIndex>;

extern template class BasicCluster<HostIndex>;
extern template class BasicCluster<LinearHostIndex>;

// "48 GiB", "1500 MiB"; "16 GHz", "2500 MHz": for reasons a person reads.
std::string fmt_mib(std::int64_t mib);
std::string fmt_mhz(std::int64_t mhz);

}  // namespace memlend::policy
