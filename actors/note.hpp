// A console line that is not an event: reasons, refusals, things not done.
// The sink prints it and keeps it out of the event log, which has no entry
// without an event name.
#pragma once

#include "actors/actors.hpp"
#include "core/sim_clock.hpp"

#include <string>
#include <utility>

namespace memlend {

// `Self` is any actor that may send to the sink; `clock` gives the line its
// scenario time.
template <class Self>
void note(Self* self, const sink_actor& sink, const SimClock& clock, std::string text) {
  LogEvent e;
  e.t_s = clock.now(self->clock());
  e.text = std::move(text);
  self->send(sink, atom::event::value, std::move(e));
}

}  // namespace memlend
