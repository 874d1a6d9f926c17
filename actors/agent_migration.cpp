#include "actors/agent_internal.hpp"

#include "actors/off_thread.hpp"

#include <functional>
#include <tuple>

namespace memlend::agent_detail {

namespace {

// A platform action's outcome: done (with what it says), or why not.
using Outcome = std::tuple<bool, std::string>;

caf::result<bool, std::string> off_thread(self_ptr self, std::function<Outcome()> work) {
  auto rp = self->make_response_promise<bool, std::string>();
  auto worker = spawn_off_thread(self, std::move(work), true);
  self->request(worker, caf::infinite, atom::tick::value)
      .then([=](bool ok, std::string what) mutable { rp.deliver(ok, std::move(what)); },
            [=](caf::error& e) mutable { rp.deliver(false, "its worker failed: " + caf::to_string(e)); });
  return rp;
}

caf::result<bool, std::string> answer(bool ok, std::string what) {
  return caf::result<bool, std::string>(ok, std::move(what));
}

}  // namespace

caf::result<bool, std::string> receive_vm(self_ptr self, const std::string& vm) {
  auto& st = self->state;
  if (!from_controller(self)) return answer(false, "not from this agent's controller");
  // The scenario's platform moves the VM itself when the controller tells.
  if (!st.config.node) return answer(true, "");
  say(self, "readies this node to take in VM " + vm, about_vm(vm));
  auto node = st.config.node;
  return off_thread(self, [node, vm]() -> Outcome {
    auto address = node->platform().receive(vm);
    if (!address) return {false, address.error().message};
    return {true, *address};
  });
}

caf::result<bool, std::string> migrate_vm(self_ptr self, const std::string& vm, const std::string& host,
                                          const std::string& address) {
  auto& st = self->state;
  if (!from_controller(self)) return answer(false, "not from this agent's controller");
  if (!st.config.node) return answer(true, "");
  // Its memory is a file this node serves: at the target no file would be.
  if (st.config.plane_plugs.count(vm))
    return answer(false, "VM " + vm + "'s memory is a file this node's memlend serves (qemu-vm), which stays here");
  say(self, "migrates VM " + vm + " to " + host + " (" + address + ")", about_vm(vm));
  auto node = st.config.node;
  return off_thread(self, [node, vm, host, address]() -> Outcome {
    auto done = node->platform().migrate(vm, platform::MigrationTarget{host, address});
    if (!done) return {false, done.error().message};
    return {true, ""};
  });
}

}  // namespace memlend::agent_detail
