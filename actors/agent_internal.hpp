// What the agent's source files share of its insides: agent.cpp joins,
// samples and applies the controller's world; agent_migration.cpp carries
// out the migrations it commands.
#pragma once

#include "actors/agent.hpp"
#include "core/log.hpp"

#include <caf/all.hpp>

#include <string>

namespace memlend::agent_detail {

using self_ptr = agent_actor::stateful_pointer<agent_state>;

// One actor per agent process prints, so plain stdout cannot interleave.
// `about`: what the line concerns beside this host, for the log's fields.
void say(self_ptr self, const std::string& text, log::Fields about = {});
log::Fields about_vm(const std::string& vm, std::uint64_t lease = 0);

// What the controller commands (a VM's state, a fence, a migration) comes
// from the controller this agent joined, and from no other node: a
// compromised peer must not make this node map or drop leases, move its VMs
// to itself, nor start QEMUs.
bool from_controller(self_ptr self);

// The controller's commands of a migration, answered once the platform has
// done them (or why not), off the agent's thread.
caf::result<bool, std::string> receive_vm(self_ptr self, const std::string& vm);
caf::result<bool, std::string> migrate_vm(self_ptr self, const std::string& vm, const std::string& host,
                                          const std::string& address);

}  // namespace memlend::agent_detail
