// One actor per VM with remote memory: the VM's mirror file on the shared
// datastore, created 0600 and sized to what the VM borrows, read in place of
// a donor that is gone, deleted when the VM borrows nothing or its host dies.
#pragma once

#include "actors/actors.hpp"
#include "dataplane/data_plane.hpp"

#include <memory>

#include <caf/typed_event_based_actor.hpp>

namespace memlend {

struct mirror_state {
  static constexpr const char* name = "mirror_writer";
  MirrorInfo info;
  std::shared_ptr<DataPlane> plane;  // with one, the regions write the file and the plane deletes it
  supervisor_actor supervisor;
  sink_actor sink;
};

mirror_actor::behavior_type mirror_writer(mirror_actor::stateful_pointer<mirror_state> self, MirrorInfo info,
                                          std::shared_ptr<DataPlane> plane, supervisor_actor supervisor,
                                          sink_actor sink);

}  // namespace memlend
