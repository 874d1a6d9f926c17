#include "node/recovery.hpp"

#include "journal/journal.hpp"
#include "rdma/mirror.hpp"

#include <ctime>
#include <filesystem>
#include <map>
#include <optional>

namespace memlend {

using namespace memlend::policy;

namespace {

// The first records of a fresh store: the cluster and what the scenario
// says VMs already borrow.
store::Batch first_batch(const Scenario& s, const StartState& start, const std::string& fingerprint,
                         const std::string& datastore) {
  store::Batch b(0);
  b.scenario(fingerprint);
  for (HostId h = 0; h < s.hosts.size(); ++h) b.put(host_record(s.hosts[h], h, s.hosts[h].up));
  std::map<VmId, std::int64_t> borrowed;
  for (const auto& l : start.leases) borrowed[l.vm] += l.mib;
  for (VmId v = 0; v < s.vms.size(); ++v) {
    store::VmRecord r;
    r.id = v;
    r.name = s.vms[v].name;
    r.host = s.vms[v].host;
    r.memory_mib = s.vms[v].memory_mib;
    r.cpu_mhz = s.vms[v].cpu_mhz;
    if (auto since = start.remote_since.find(v); since != start.remote_since.end()) r.remote_since_s = since->second;
    b.put(r);
  }
  for (const auto& l : start.leases) b.put(lease_record(l));
  for (const auto& [vm, mib] : borrowed) {
    store::MirrorRecord m;
    m.vm = vm;
    m.path = rdma::mirror_path(datastore, s.vms[vm].name);
    m.bytes = mib * 1024 * 1024;
    b.put(m);
  }
  return b;
}

// The simulated platform as it was: the scenario, the VMs that moved, the
// memory lent. The scenario's events up to the resumed time apply at the
// first sample.
std::shared_ptr<platform::Platform> rebuild_platform(const Scenario& original, const Scenario& now,
                                                     const StartState& start, std::vector<std::string>& notes) {
  std::shared_ptr<platform::Platform> p = platform::make_sim(original);
  // Hosts and VMs that joined at run time have agents of their own and are
  // no part of the simulation.
  auto simulated = [&](VmId v, HostId h) { return v < original.vms.size() && h < original.hosts.size(); };
  for (VmId v = 0; v < original.vms.size(); ++v)
    if (now.vms[v].host != original.vms[v].host && simulated(v, now.vms[v].host)) p->migrate(v, now.vms[v].host);
  for (const auto& l : start.leases) {
    if (!simulated(l.vm, l.donor)) continue;
    if (auto r = p->attach_remote(l.vm, l.donor, l.mib); !r)
      notes.push_back("could not attach lease " + std::to_string(l.id) + " again: " + r.error().message);
  }
  return p;
}

// The store's hosts and VMs are the scenario's, in its order and under its
// names, and then those that joined at run time (an open cluster); anything
// else is another cluster's store. Ids are the store's rows' order.
std::optional<std::string> grown_from(const store::Snapshot& snap, const Scenario& scenario) {
  if (snap.hosts.size() < scenario.hosts.size() || snap.vms.size() < scenario.vms.size())
    return std::string("it holds fewer hosts or VMs than the scenario lists");
  for (std::size_t i = 0; i < snap.hosts.size(); ++i) {
    if (snap.hosts[i].id != i) return "its host rows are not numbered 0 to " + std::to_string(snap.hosts.size() - 1);
    if (i < scenario.hosts.size() && snap.hosts[i].name != scenario.hosts[i].name)
      return "its host " + std::to_string(i) + " is " + snap.hosts[i].name + ", the scenario's is " +
             scenario.hosts[i].name;
  }
  for (std::size_t i = 0; i < snap.vms.size(); ++i) {
    if (snap.vms[i].id != i) return "its VM rows are not numbered 0 to " + std::to_string(snap.vms.size() - 1);
    if (i < scenario.vms.size() && snap.vms[i].name != scenario.vms[i].name)
      return "its VM " + std::to_string(i) + " is " + snap.vms[i].name + ", the scenario's is " + scenario.vms[i].name;
    if (snap.vms[i].host >= snap.hosts.size())
      return "its VM " + snap.vms[i].name + " runs on host " + std::to_string(snap.vms[i].host) + ", which it lacks";
  }
  return std::nullopt;
}

}  // namespace

Expected<Resumed> open_run(const Scenario& scenario, const ResumeOptions& options) {
  std::string fingerprint = scenario_fingerprint(options.scenario_text);
  Resumed out;
  store::Options so;
  so.on_commit = options.on_commit;
  so.events_keep_days = options.events_keep_days;
  so.events_keep_rows = options.events_keep_rows;
  std::optional<store::Replica> replica = options.replica;
  if (replica && options.import_db) replica->import_file = options.db;
  auto opened = replica ? store::Store::open_replicated(*replica, so) : store::Store::open(options.db, so);
  if (!opened) return Error{opened.error().message};
  std::shared_ptr<store::Store> db(std::move(*opened));
  const std::string where = db->path();
  auto snapshot = db->load();
  if (!snapshot) return Error{snapshot.error().message};

  if (!snapshot->fresh() && snapshot->scenario != fingerprint)
    return Error{where + ": holds the state of another scenario; give --db another file, or move this one "
                         "away to start afresh"};
  // A run that already reached its end has nothing to resume: the demo run
  // again starts over, keeping the old file beside.
  if (!options.replica && !snapshot->fresh() && options.until_s && snapshot->clock_s >= *options.until_s) {
    db.reset();
    std::string aside = options.db + ".ended-" + std::to_string(static_cast<long long>(std::time(nullptr)));
    std::error_code ec;
    for (const char* suffix : {"", "-wal", "-shm"}) {
      std::string from = options.db + suffix;
      if (std::filesystem::exists(from, ec)) std::filesystem::rename(from, aside + suffix, ec);
      if (ec) return Error{options.db + ": cannot move the ended run aside (" + ec.message() + ")"};
    }
    out.notes.push_back(options.db + " held a run of this scenario that had ended; it is kept as " + aside +
                        " and the run starts afresh");
    auto again = store::Store::open(options.db, so);
    if (!again) return Error{again.error().message};
    db = std::shared_ptr<store::Store>(std::move(*again));
    snapshot = db->load();
    if (!snapshot) return Error{snapshot.error().message};
  }

  // This controller's first transaction raises the leadership epoch: a
  // controller that started before it, on this node or another, is older.
  auto raise_epoch = [&](double t) -> Expected<std::uint64_t> {
    std::uint64_t next = snapshot->epoch + 1;
    auto raised = db->commit(store::Batch(t).epoch(next));
    if (!raised.ok()) return Error{raised.error};
    return next;
  };

  if (snapshot->fresh()) {
    out.scenario = scenario;
    out.start = fresh_start(scenario, 0);
    auto outcome = db->commit(first_batch(scenario, out.start, fingerprint, options.datastore));
    if (!outcome.ok()) return Error{outcome.error};
    auto epoch = raise_epoch(0);
    if (!epoch) return epoch.error();
    out.start.epoch = *epoch;
    out.platform = platform::make_sim(scenario);
    out.store = db;
    out.fingerprint = fingerprint;
    return out;
  }

  // Resume: the cluster as the store left it.
  const store::Snapshot& snap = *snapshot;
  if (auto bad = grown_from(snap, scenario))
    return Error{where + ": " + *bad + "; give --db another file"};
  Scenario now = scenario;
  for (const auto& h : snap.hosts) {
    if (h.id >= now.hosts.size()) now.hosts.push_back(host_of_record(h));
    now.hosts[h.id].up = h.up;
  }
  for (const auto& v : snap.vms) {
    if (v.id >= now.vms.size()) {
      now.vms.emplace_back();
      now.vms.back().name = v.name;
    }
    now.vms[v.id].host = v.host;
    now.vms[v.id].memory_mib = v.memory_mib;
    now.vms[v.id].cpu_mhz = v.cpu_mhz;
    now.vms[v.id].remote.clear();
    now.vms[v.id].remote_for_s = 0;
  }
  StartState start;
  start.next_lease = snap.next_lease_id;
  for (VmId v = 0; v < scenario.vms.size(); ++v) start.first_hosts.push_back(scenario.vms[v].host);
  // A VM that joined began where its agent first named it; the store keeps
  // only where it is now, which the agents rebuild from as well.
  for (VmId v = scenario.vms.size(); v < now.vms.size(); ++v) start.first_hosts.push_back(now.vms[v].host);
  for (const auto& r : snap.leases) {
    if (r.state != store::LeaseState::active && r.state != store::LeaseState::failed) continue;
    LeaseInfo l = lease_info(r);
    // The grant pointed into the process that died: the lease is granted again.
    if (options.data_path_in_process) {
      l.data = {};
      l.replaces = 0;
    }
    start.leases.push_back(l);
    auto& parts = now.vms[l.vm].remote;
    auto it = std::find_if(parts.begin(), parts.end(), [&](const RemotePart& p) { return p.donor == l.donor; });
    if (it == parts.end())
      parts.push_back({l.donor, l.mib});
    else
      it->mib += l.mib;
  }
  for (const auto& v : snap.vms)
    if (v.remote_since_s) start.remote_since[v.id] = *v.remote_since_s;
  for (const auto& r : snap.recommendations) start.recommended.insert(r.vm);
  auto epoch = raise_epoch(snap.clock_s);
  if (!epoch) return epoch.error();
  start.epoch = *epoch;
  out.notes.push_back("resuming from " + where + " at t=" + std::to_string(static_cast<long>(snap.clock_s)) +
                      "s: " + std::to_string(start.leases.size()) + " leases, " +
                      std::to_string(snap.mirrors.size()) + " mirrors, " +
                      std::to_string(snap.recommendations.size()) + " recommendations; leadership epoch " +
                      std::to_string(start.epoch));
  out.platform = rebuild_platform(scenario, now, start, out.notes);
  out.scenario = std::move(now);
  out.start = std::move(start);
  out.origin_s = snap.clock_s;
  out.resumed = true;
  out.store = db;
  out.fingerprint = fingerprint;
  return out;
}

}  // namespace memlend
