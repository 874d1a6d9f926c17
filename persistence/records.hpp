// What the store holds, as plain values: one struct per table row. Hosts and
// VMs are numbered as in the scenario (policy::HostId, policy::VmId), so the
// actors keep their own indices; names are stored beside them for people.
#pragma once

#include "core/vocabulary.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memlend::store {

using memlend::LeaseState;
using memlend::MirrorState;
using memlend::parse_lease_state;
using memlend::parse_mirror_state;
using memlend::to_string;

struct HostRecord {
  std::uint32_t id = 0;
  std::string name;  // fixed for an id: a scenario that renames hosts is refused
  std::int64_t memory_mib = 0;
  std::int64_t cpu_mhz = 0;
  std::int64_t reserved_mib = 0;
  bool rdma = true;
  bool data_path = true;
  bool up = true;
  std::string fabric;
  std::int64_t used_mib = 0;  // local shares of its own VMs
  std::int64_t used_mhz = 0;
  // The host actor's own state (JSON, owned by the actors; opaque here).
  std::string actor_state;
  double updated_t_s = 0;  // filled by the store from the batch
};

struct VmRecord {
  std::uint32_t id = 0;
  std::string name;  // fixed for an id
  std::uint32_t host = 0;
  std::int64_t memory_mib = 0;  // demand
  std::int64_t cpu_mhz = 0;
  std::int64_t local_mib = 0;   // its local share on `host`
  std::optional<double> remote_since_s;    // scenario time it began to borrow
  std::optional<std::uint32_t> migrating_to;  // a migration in phase one
  std::string actor_state;  // the VM actor's own state (JSON; opaque here)
  double updated_t_s = 0;
};

struct LeaseRecord {
  std::uint64_t id = 0;  // > 0, never reused
  std::uint32_t vm = 0;
  std::uint32_t donor = 0;      // fixed for an id
  std::uint32_t recipient = 0;  // the host the VM runs on
  std::int64_t mib = 0;
  LeaseState state = LeaseState::reserving;
  std::string transport = "rdma";  // rdma or tcp
  std::string datapath_key;        // what the data path needs to reach the region again
  std::uint64_t epoch = 1;         // fencing generation; never goes down
  double created_t_s = 0;          // filled by the store
  double updated_t_s = 0;
};

struct MirrorRecord {
  std::uint32_t vm = 0;
  std::string path;
  std::int64_t bytes = 0;
  std::int64_t watermark_bytes = 0;  // how much of it is written back, 0..bytes
  MirrorState state = MirrorState::writing;
  double updated_t_s = 0;
};

struct RecommendationRecord {
  std::uint32_t vm = 0;
  std::uint32_t target = 0;
  std::string reason;
  double t_s = 0;  // filled by the store from the batch
};

// One line of the event log (DESIGN.md, "Event log"): empty strings and a
// missing mib are left out, exactly as in --events-out.
struct EventRecord {
  std::uint64_t seq = 0;  // filled by the store: 1, 2, 3, ... with no gaps
  double t_s = 0;
  std::string event;
  std::string vm;
  std::string host;
  std::string donor;
  std::optional<std::int64_t> mib;
  // The sentence of the decision this event carries out (what `memlend plan`
  // prints); empty for an event that is no decision (schema version 4 on).
  std::string reason;
};

// The event names of DESIGN.md; the store refuses any other.
const std::vector<std::string_view>& event_names();

}  // namespace memlend::store
