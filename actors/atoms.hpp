// Atoms: the verbs of memlend's actor protocol (CAF 0.17 atoms are at most
// ten characters). actors.hpp says who accepts which.
#pragma once

#include <caf/atom.hpp>

namespace memlend::atom {

#define MEMLEND_ATOM(name, text) using name = caf::atom_constant<caf::atom(text)>

MEMLEND_ATOM(tick, "tick");          // the platform driver's sampling timer
MEMLEND_ATOM(sample, "sample");      // a VM's telemetry
MEMLEND_ATOM(health, "health");      // a host's telemetry
MEMLEND_ATOM(need, "need");          // a VM asks for what it lacks
MEMLEND_ATOM(surplus, "surplus");    // a VM can give memory back
MEMLEND_ATOM(recommend, "recommend");// a VM has used remote memory long enough
MEMLEND_ATOM(remind, "remind");      // a VM's own recommendation timer
MEMLEND_ATOM(granted, "granted");    // the planner tells a VM it got remote memory
MEMLEND_ATOM(reserve, "reserve");    // phase one at a donor: hold memory for a lease
MEMLEND_ATOM(reservevm, "reservevm");// phase one at a target: hold room for a VM
MEMLEND_ATOM(commit, "commit");      // phase two
MEMLEND_ATOM(cancel, "cancel");      // phase two, the other way
MEMLEND_ATOM(release, "release");    // a lease ends
MEMLEND_ATOM(hostdown, "hostdown");  // a host stopped answering
MEMLEND_ATOM(hostup, "hostup");      // a host is back
MEMLEND_ATOM(failover, "failover");  // a donor is gone: read the mirror
MEMLEND_ATOM(moved, "moved");        // a lease's recipient changed host
MEMLEND_ATOM(resize, "resize");      // a mirror grows or shrinks
MEMLEND_ATOM(remove, "remove");      // a mirror is deleted
MEMLEND_ATOM(attach, "attach");      // platform action: remote memory for a VM
MEMLEND_ATOM(detach, "detach");      // platform action: the donor takes it back
MEMLEND_ATOM(migrate, "migrate");    // platform action: live migration
MEMLEND_ATOM(event, "event");        // an entry of the event log
MEMLEND_ATOM(spawn, "spawn");        // ask the supervisor for a new child
MEMLEND_ATOM(checkpoint, "checkpnt");// a child's latest state, kept for its restart
MEMLEND_ATOM(rebind, "rebind");      // a restarted child has a new handle
MEMLEND_ATOM(restart, "restart");    // the supervisor's backoff timer
MEMLEND_ATOM(shutdown, "shutdown");  // stop in order
MEMLEND_ATOM(get, "get");            // read state (tests, support)
MEMLEND_ATOM(flush, "flush");        // write out what is buffered
MEMLEND_ATOM(join, "join");          // an agent asks to join the cluster
MEMLEND_ATOM(challenge, "challenge");// an agent asks for a nonce to sign in its join
MEMLEND_ATOM(telemetry, "telemetry");// an agent's samples of its host
MEMLEND_ATOM(bind, "bind");          // a host actor learns its agent
MEMLEND_ATOM(fence, "fence");        // an agent keeps only these leases
MEMLEND_ATOM(connect, "connect");    // an agent's (re)connection timer
MEMLEND_ATOM(silence, "silence");    // a host actor's heartbeat timer
MEMLEND_ATOM(alive, "alive");        // an agent whose node's reading is under way
MEMLEND_ATOM(mirrorfail, "mirrorfail");  // the data path cannot write a VM's mirror
MEMLEND_ATOM(admit, "admit");        // a host joined, or a VM was first seen

#undef MEMLEND_ATOM

}  // namespace memlend::atom
