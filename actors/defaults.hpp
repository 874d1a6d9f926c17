// Every timeout and limit of the actor system in one place.
#pragma once

#include <chrono>
#include <cstddef>

namespace memlend::defaults {

// A request between local actors that takes longer than this means a stuck actor.
inline constexpr auto request_timeout = std::chrono::seconds(30);
// A live migration on real nodes: the target starts its incoming QEMU, then
// the guest's memory crosses the network (the platforms give up at 10 min).
inline constexpr auto receive_timeout = std::chrono::seconds(90);
inline constexpr auto migration_timeout = std::chrono::seconds(660);
// Restart backoff: first delay, doubled per restart of the same child, capped.
inline constexpr auto restart_backoff = std::chrono::milliseconds(100);
inline constexpr auto restart_backoff_max = std::chrono::seconds(5);
// More restarts than this within the window: the supervisor gives up and
// shuts the controller down, since something is wrong that restarts won't fix.
inline constexpr int restart_limit = 5;
inline constexpr auto restart_window = std::chrono::seconds(60);
// Shutdown: children get this long to stop politely before they are killed.
inline constexpr auto shutdown_grace = std::chrono::seconds(5);
// A join's nonce: good for one join within this long (an agent asks for it
// right before it joins), and at most this many outstanding, so that a peer
// asking for nonces and never joining cannot grow the registrar without bound.
inline constexpr auto join_nonce_ttl = std::chrono::seconds(60);
inline constexpr std::size_t join_nonces_max = 4096;
// An agent's plain TCP connect to a controller's address, before CAF's: a
// dead host costs this much, then the next address is tried. Far above a
// cluster network's round trip, far below the kernel's SYN retries.
inline constexpr auto controller_probe_timeout = std::chrono::milliseconds(2000);

}  // namespace memlend::defaults
