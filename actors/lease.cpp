#include "actors/lease.hpp"

#include <caf/all.hpp>

namespace memlend {

lease_actor::behavior_type lease(lease_actor::stateful_pointer<lease_state> self, LeaseInfo info,
                                 supervisor_actor supervisor) {
  self->state.info = std::move(info);
  self->state.supervisor = supervisor;
  auto save = [self] {
    self->send(self->state.supervisor, atom::checkpoint::value, std::string("lease"), self->state.info.id,
               caf::make_message(self->state.info));
  };
  if (self->state.info.state == "reserving") {
    self->state.info.state = "active";
    save();
  }
  return {
      [=](atom::release) {
        self->state.info.state = "released";
        save();
        self->quit();
      },
      [=](atom::failover) {
        self->state.info.state = "failed";
        save();
      },
      [=](atom::moved, std::uint32_t host) {
        self->state.info.recipient = host;
        save();
      },
      [=](atom::get) { return self->state.info; },
  };
}

}  // namespace memlend
