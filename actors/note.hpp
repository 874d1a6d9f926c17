// A console line that is not an event: reasons, refusals, things not done.
// The sink prints it and keeps it out of the event log, which has no entry
// without an event name.
#pragma once

#include "actors/actors.hpp"
#include "core/sim_clock.hpp"

#include <cstdint>
#include <string>
#include <utility>

namespace memlend {

// What a line is about, for the log's fields (journalctl MEMLEND_VM=...);
// the text names them for a person. Empty (0) where it is about none.
struct About {
  About(std::string vm = {}, std::string host = {}, std::string donor = {}, std::uint64_t lease = 0)
      : vm(std::move(vm)), host(std::move(host)), donor(std::move(donor)), lease(lease) {}
  std::string vm;
  std::string host;
  std::string donor;
  std::uint64_t lease;
};

// `Self` is any actor that may send to the sink; `clock` gives the line its
// scenario time.
template <class Self>
void note(Self* self, const sink_actor& sink, const SimClock& clock, std::string text, About about = {}) {
  LogEvent e;
  e.t_s = clock.now(self->clock());
  e.text = std::move(text);
  e.vm = std::move(about.vm);
  e.host = std::move(about.host);
  e.donor = std::move(about.donor);
  e.lease = about.lease;
  self->send(sink, atom::event::value, std::move(e));
}

}  // namespace memlend
