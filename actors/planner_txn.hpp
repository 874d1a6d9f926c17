// What the planner's parts share: its write-ahead transactions (the rows and
// events of one step, written in one batch and acted on only once durable),
// the records it writes, and the lease and mirror transitions every job
// kind makes. Private to actors/planner*.cpp.
#pragma once

#include "actors/note.hpp"
#include "actors/planner.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace memlend::planner_parts {

using self_ptr = planner_actor::stateful_pointer<planner_state>;

double now(self_ptr self);
// A console line that is not an event: reasons, refusals, things not done.
void note(self_ptr self, std::string text, About about = {});

// One step of the planner's work as the store sees it: the rows that change
// and the events that say so, written in one batch, and the actions that may
// be carried out only once that batch is durable.
struct Txn {
  store::Batch batch;
  std::vector<LogEvent> events;
  std::vector<std::function<void()>> acts;
  explicit Txn(double t) : batch(t) {}
};
using TxnPtr = std::shared_ptr<Txn>;

TxnPtr begin(self_ptr self);
// `reason`: the decision's sentence, for an event that carries one out;
// `lease`: the one lease the event is about, if it is about one.
void emit(self_ptr self, const TxnPtr& txn, std::string event, std::uint32_t vm, std::optional<std::uint32_t> host,
          std::optional<std::uint32_t> donor, std::int64_t mib, std::string text, std::string reason = {},
          std::uint64_t lease = 0);
void act(const TxnPtr& txn, std::function<void()> f);
// Writes the transaction; once durable, its events go out and its actions
// run, then `then`.
void persist(self_ptr self, TxnPtr txn, std::function<void()> then);
// The store's answer for a transaction persist() submitted.
void durable(self_ptr self, std::uint64_t token, bool ok, const std::string& error);

std::string mirror_path(self_ptr self, std::uint32_t vm);
store::VmRecord vm_record(self_ptr self, std::uint32_t v);
store::MirrorRecord mirror_record(self_ptr self, std::uint32_t vm, std::int64_t mib, store::MirrorState state);

// The VM's mirror follows the total it borrows: made, grown, shrunk, deleted.
void sync_mirror(self_ptr self, const TxnPtr& txn, std::uint32_t vm);

// Leases reserved at their donors (phase one): a grant each and the id the
// lease has.
struct Reserved {
  std::vector<policy::LeaseGrant> grants;
  std::vector<std::uint64_t> ids;
};
using ReservedPtr = std::shared_ptr<Reserved>;

// Phase two at the donors, once the transaction is durable.
void commit_reserved(self_ptr self, const TxnPtr& txn, const ReservedPtr& r);
// Records reserved leases as granted, each event with the decision's reason,
// and, once durable, starts their lease actors and attaches the memory.
void start_leases(self_ptr self, const TxnPtr& txn, std::uint32_t vm, const Reserved& r, const char* event,
                  const std::string& reason, std::uint64_t replaces = 0, std::uint64_t epoch = 1);
// Records the end of the VM's leases from `donor` (`event` names why, none
// for a failed lease that simply goes) and, once durable, releases them.
// `only`: that lease alone; `replaced`: a new lease takes its contents, so its
// region stays. The MiB ended.
std::int64_t end_leases(self_ptr self, const TxnPtr& txn, std::uint32_t vm, policy::HostId donor, const char* event,
                        bool detach, std::uint64_t only = 0, bool replaced = false);

}  // namespace memlend::planner_parts
