// The planner's answer to a VM's need, as a type: the VM actor branches on
// it, so a misspelt or renamed kind is a compile error, not a need that is
// never satisfied. The names are the policy's decision kinds plus the two
// ways the planner decides nothing now.
#pragma once

#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>

#include <array>
#include <cstddef>
#include <ostream>
#include <string_view>

namespace memlend {

enum class NeedOutcome {
  none,                 // the VM has what it needs
  remote_memory,        // it borrows what it lacks
  migrate,              // it moved to a host that has it
  recommend_migration,  // the policy recommends a move; nothing done now
  unsatisfied,          // nothing in the cluster can help it
  retry,                // a peer refused or did not answer: decided again on its next need
  dry_run,              // decided, and only said
};

inline constexpr std::array<std::string_view, 7> need_outcomes{
    "none", "remote_memory", "migrate", "recommend_migration", "unsatisfied", "retry", "dry_run"};

inline bool valid(NeedOutcome o) { return static_cast<std::size_t>(o) < need_outcomes.size(); }
inline std::string_view to_string(NeedOutcome o) {
  return valid(o) ? need_outcomes[static_cast<std::size_t>(o)] : "invalid";
}
inline std::ostream& operator<<(std::ostream& os, NeedOutcome o) { return os << to_string(o); }

// A struct around the enum: CAF 0.17 serialises a bare enum as a number
// with no hook to refuse one out of range.
struct NeedAnswer {
  NeedOutcome outcome = NeedOutcome::none;
  // The need is met: a later one must again persist for detect_samples.
  bool satisfied() const { return outcome == NeedOutcome::remote_memory || outcome == NeedOutcome::migrate; }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, NeedAnswer& x) {
  auto check = caf::meta::load_callback(
      [&]() -> caf::error { return valid(x.outcome) ? caf::error{} : caf::make_error(caf::sec::invalid_argument); });
  return f(caf::meta::type_name("memlend.need_answer"), x.outcome, check);
}

}  // namespace memlend
