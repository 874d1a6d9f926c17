// Work that blocks (a node's reading, a live migration, a connect to an
// address that may be dead) runs in an actor on a thread of its own, so that
// the actor that asks for it keeps answering meanwhile: the agent samples,
// and so stays alive to its controller, while a migration crosses.
#pragma once

#include "actors/atoms.hpp"

#include <caf/all.hpp>

#include <functional>

namespace memlend {

// Answers each tick with work()'s result; with `once`, quits after the
// first. The work is the actor's argument, not a capture: CAF 0.17 binds a
// null pointer as the (empty) argument tuple of an actor spawned with none,
// which UBSan rightly reports.
template <class Result>
caf::behavior off_thread_actor(caf::event_based_actor* self, std::function<Result()> work, bool once) {
  return {[=](atom::tick) {
    if (once) self->quit();
    return work();
  }};
}

// Spawns one: detached, and linked to `owner` when it lives on (so that it
// ends with its owner).
template <class Result, class Owner>
caf::actor spawn_off_thread(Owner* owner, std::function<Result()> work, bool once) {
  if (once) return owner->template spawn<caf::detached>(off_thread_actor<Result>, std::move(work), true);
  return owner->template spawn<caf::detached + caf::linked>(off_thread_actor<Result>, std::move(work), false);
}

}  // namespace memlend
