// One actor per donor lease: it holds the lease's data-path connection and
// its state (active, failed when the donor dies, released at the end), and
// comes back from its last state when it crashes.
#pragma once

#include "actors/actors.hpp"

#include <caf/typed_event_based_actor.hpp>

namespace memlend {

struct lease_state {
  static constexpr const char* name = "lease";
  LeaseInfo info;
  supervisor_actor supervisor;
};

lease_actor::behavior_type lease(lease_actor::stateful_pointer<lease_state> self, LeaseInfo info,
                                 supervisor_actor supervisor);

}  // namespace memlend
