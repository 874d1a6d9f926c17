#include "actors/lease.hpp"

#include "actors/note.hpp"

#include <caf/all.hpp>

namespace memlend {

namespace {

using self_ptr = lease_actor::stateful_pointer<lease_state>;

void save(self_ptr self) {
  self->send(self->state.supervisor, atom::checkpoint::value, ChildKind::lease, self->state.info.id,
             caf::make_message(self->state.info));
}

void note(self_ptr self, std::string text, About about = {}) {
  memlend::note(self, self->state.sink, self->state.config.clock, std::move(text), std::move(about));
}

// On the plane's worker: the donor grants, then the recipient maps the lease
// (or, for a re-homed lease, moves the failed one's region onto it).
void set_up(self_ptr self) {
  auto& st = self->state;
  auto plane = st.config.plane;
  LeaseInfo info = st.info;
  std::string donor = st.config.host_names[info.donor];
  std::string vm = st.config.vm_names[info.vm];
  bool local = st.config.local_recipient;
  auto me = caf::actor_cast<lease_actor>(self);
  plane->post([plane, info, donor, vm, local, me] {
    auto granted = plane->grant(donor, plane->address(donor), info.mib);
    if (!granted) return caf::anon_send(me, atom::cancel::value, granted.error().message);
    LeaseInfo done = info;
    done.data = *granted;
    if (local) {
      bool replacing = info.replaces != 0 && plane->has_region(vm, info.replaces);
      // The old lease's actor may not have failed its region over yet; doing
      // it here too is harmless and spares the race.
      if (replacing) plane->fail_over(vm, info.replaces, "its donor " + donor + " replaces a failed one");
      auto mapped = replacing ? plane->rehome(vm, info.replaces, info.id, *granted)
                              : plane->attach(vm, info.id, info.mib, *granted);
      if (!mapped) {
        plane->release(donor, *granted);
        return caf::anon_send(me, atom::cancel::value, mapped.error().message);
      }
    }
    caf::anon_send(me, atom::commit::value, done);
  }, (info.replaces ? "re-homing lease " + std::to_string(info.replaces) + " of " + vm + " to lease "
                    : "granting lease ") + std::to_string(info.id) + " from " + donor);
}

}  // namespace

lease_actor::behavior_type lease(lease_actor::stateful_pointer<lease_state> self, LeaseInfo info, LeaseConfig config,
                                 supervisor_actor supervisor, sink_actor sink, driver_actor driver,
                                 planner_actor planner) {
  auto& st = self->state;
  st.info = std::move(info);
  st.config = std::move(config);
  st.supervisor = supervisor;
  st.sink = sink;
  st.driver = driver;
  st.planner = planner;
  if (st.info.state == LeaseState::reserving) {
    st.info.state = LeaseState::active;
    save(self);
  }
  // A lease granted before a crash already has its data path.
  if (st.config.plane && st.info.state == LeaseState::active && st.info.data.id == 0) set_up(self);
  return {
      [=](atom::commit, const LeaseInfo& done) {
        auto& st = self->state;
        if (st.info.state != LeaseState::active) {
          // Ended while the grant was under way: give it straight back.
          auto plane = st.config.plane;
          std::string vm = st.config.vm_names[done.vm], donor = st.config.host_names[done.donor];
          bool local = st.config.local_recipient;
          plane->post([plane, vm, donor, done, local] {
            if (local) plane->detach(vm, done.id);
            plane->release(donor, done.data);
          });
          return;
        }
        st.info.data = done.data;
        save(self);
        // Recorded, so that a restarted controller reaches the lease again.
        if (st.planner) self->send(st.planner, atom::commit::value, st.info);
        // In a cluster the recipient's agent maps the lease: it needs the grant.
        if (!st.config.local_recipient && st.driver) self->send(st.driver, atom::commit::value, st.info);
      },
      [=](atom::cancel, const std::string& why) {
        if (auto* m = self->state.config.metrics) m->lease_failures(metrics::LeaseFailure::data_path).inc();
        const auto& info = self->state.info;
        const auto& vm = self->state.config.vm_names[info.vm];
        note(self, "error: lease " + std::to_string(info.id) + " of " + vm + " has no data path: " + why,
             {vm, {}, {}, info.id});
      },
      [=](atom::release, bool keep_region) {
        auto& st = self->state;
        st.info.state = LeaseState::released;
        save(self);
        if (auto plane = st.config.plane) {
          std::string vm = st.config.vm_names[st.info.vm], donor = st.config.host_names[st.info.donor];
          LeaseInfo l = st.info;
          bool detach = st.config.local_recipient && !keep_region;
          plane->post([plane, vm, donor, l, detach] {
            if (detach) plane->detach(vm, l.id);
            plane->release(donor, l.data);
          });
        }
        self->quit();
      },
      [=](atom::failover) {
        auto& st = self->state;
        st.info.state = LeaseState::failed;
        save(self);
        if (auto plane = st.config.plane; plane && st.config.local_recipient) {
          std::string vm = st.config.vm_names[st.info.vm];
          std::string why = st.config.host_names[st.info.donor] + " is down";
          std::uint64_t id = st.info.id;
          plane->post([plane, vm, id, why] { plane->fail_over(vm, id, why); });
        }
      },
      [=](atom::moved, std::uint32_t host) {
        self->state.info.recipient = host;
        save(self);
      },
      [=](atom::get) { return self->state.info; },
  };
}

}  // namespace memlend
