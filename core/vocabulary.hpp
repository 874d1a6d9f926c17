// The states and kinds every room speaks of, as types. Each has one spelling
// as text, used by the store, the event log, the views and the plan output;
// parsing anything else gives nothing, never a default.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <ostream>
#include <string_view>

namespace memlend {

// A lease's life (the store's table `lease_transitions` lists the allowed
// steps): reserving (phase one at the donor) → active → draining → released,
// and failed (its donor is gone) from any live state, then released.
enum class LeaseState { reserving, active, draining, released, failed };
// A mirror file: being written, serving reads for a failed donor, deleted.
// failed: the data path could not write it, so it holds no copy.
enum class MirrorState { writing, serving, deleted, failed };
// How a lease's bytes travel: RDMA verbs when both ends have a NIC, else TCP.
enum class Transport { rdma, tcp };

namespace vocabulary_detail {
inline constexpr std::array<std::string_view, 5> lease_states{"reserving", "active", "draining", "released", "failed"};
inline constexpr std::array<std::string_view, 4> mirror_states{"writing", "serving", "deleted", "failed"};
inline constexpr std::array<std::string_view, 2> transports{"rdma", "tcp"};

template <class E, std::size_t N>
std::optional<E> parse(const std::array<std::string_view, N>& names, std::string_view s) {
  for (std::size_t i = 0; i < N; ++i)
    if (names[i] == s) return static_cast<E>(i);
  return std::nullopt;
}

template <class E, std::size_t N>
constexpr bool valid(const std::array<std::string_view, N>&, E e) {
  return static_cast<std::size_t>(e) < N;
}
}  // namespace vocabulary_detail

inline std::string_view to_string(LeaseState s) {
  return vocabulary_detail::valid(vocabulary_detail::lease_states, s)
             ? vocabulary_detail::lease_states[static_cast<std::size_t>(s)]
             : "invalid";
}
inline std::string_view to_string(MirrorState s) {
  return vocabulary_detail::valid(vocabulary_detail::mirror_states, s)
             ? vocabulary_detail::mirror_states[static_cast<std::size_t>(s)]
             : "invalid";
}
inline std::string_view to_string(Transport t) {
  return vocabulary_detail::valid(vocabulary_detail::transports, t)
             ? vocabulary_detail::transports[static_cast<std::size_t>(t)]
             : "invalid";
}

inline std::optional<LeaseState> parse_lease_state(std::string_view s) {
  return vocabulary_detail::parse<LeaseState>(vocabulary_detail::lease_states, s);
}
inline std::optional<MirrorState> parse_mirror_state(std::string_view s) {
  return vocabulary_detail::parse<MirrorState>(vocabulary_detail::mirror_states, s);
}
inline std::optional<Transport> parse_transport(std::string_view s) {
  return vocabulary_detail::parse<Transport>(vocabulary_detail::transports, s);
}

// A value that came off the wire: an enum CAF deserialised from a number
// that may be anything a peer sent.
inline bool valid(LeaseState s) { return vocabulary_detail::valid(vocabulary_detail::lease_states, s); }
inline bool valid(MirrorState s) { return vocabulary_detail::valid(vocabulary_detail::mirror_states, s); }
inline bool valid(Transport t) { return vocabulary_detail::valid(vocabulary_detail::transports, t); }

// For logs and test messages.
inline std::ostream& operator<<(std::ostream& o, LeaseState s) { return o << to_string(s); }
inline std::ostream& operator<<(std::ostream& o, MirrorState s) { return o << to_string(s); }
inline std::ostream& operator<<(std::ostream& o, Transport t) { return o << to_string(t); }

}  // namespace memlend
