// The facts the controller records and its actors exchange: a lease, a
// mirror, an entry of the event log. The store keeps them as rows
// (journal/), the actors pass them in messages (actors/messages.hpp).
// inspect() lets CAF print and serialise them; the type names are wire names
// and must not change. A state that arrives off the wire as a number out of
// range, or a lease secret that is not one, is refused when it is loaded, so
// no peer can slip one in.
#pragma once

#include "core/lease_access.hpp"
#include "core/vocabulary.hpp"

#include <caf/detail/stringification_inspector.hpp>
#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/sec.hpp>

#include <cstdint>
#include <string>
#include <type_traits>

namespace memlend {

// One entry of the event log (DESIGN.md, "Event log"): mib < 0 and empty
// strings are left out of the JSON line. `text` is the line a person reads.
struct LogEvent {
  double t_s = 0;
  std::string event;
  std::string vm;
  std::string host;
  std::string donor;
  std::int64_t mib = -1;
  std::string text;
  // Why, for an event a decision made: kept in the store and the JSON line,
  // so a person can ask later (`memlend why`). Empty for other events.
  std::string reason;
  // The lease an event of one lease is about (granted, released, re-homed,
  // reclaimed), for the log's fields; 0 otherwise. Neither the store nor the
  // events file keeps it: the event's text names the lease for them.
  std::uint64_t lease = 0;
};

// A donor's loan to one VM.
struct LeaseInfo {
  std::uint64_t id = 0;
  std::uint32_t vm = 0;
  std::uint32_t donor = 0;
  std::uint32_t recipient = 0;
  std::int64_t mib = 0;
  LeaseState state = LeaseState::reserving;
  std::uint64_t epoch = 0;
  Transport transport = Transport::rdma;
  std::uint64_t replaces = 0;  // a re-homed lease: the failed one whose contents it takes
  LeaseAccess data;  // the data path's side, once the donor granted it (id 0 until then)
};

// The copy of one VM's remote memory on the shared datastore.
struct MirrorInfo {
  std::uint32_t vm = 0;
  std::int64_t mib = 0;
  std::string path;
  MirrorState state = MirrorState::writing;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, LogEvent& x) {
  return f(caf::meta::type_name("memlend.log_event"), x.t_s, x.event, x.vm, x.host, x.donor, x.mib, x.text, x.reason,
           x.lease);
}

// Printing a lease (a log line, a test's failure) shows whether it has a
// secret, never the secret.
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, LeaseAccess& x) {
  if constexpr (std::is_same<Inspector, caf::detail::stringification_inspector>::value) {
    std::string shown = x.secret.empty() ? "" : "<secret>";
    return f(caf::meta::type_name("memlend.lease_access"), x.addr, x.id, x.epoch, shown);
  } else {
    auto check = caf::meta::load_callback(
        [&]() -> caf::error { return valid_secret(x.secret) ? caf::error{} : caf::make_error(caf::sec::invalid_argument); });
    return f(caf::meta::type_name("memlend.lease_access"), x.addr, x.id, x.epoch, x.secret, check);
  }
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, LeaseInfo& x) {
  auto check = caf::meta::load_callback([&]() -> caf::error {
    return valid(x.state) && valid(x.transport) ? caf::error{} : caf::make_error(caf::sec::invalid_argument);
  });
  return f(caf::meta::type_name("memlend.lease"), x.id, x.vm, x.donor, x.recipient, x.mib, x.state, x.epoch,
           x.transport, x.replaces, x.data, check);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, MirrorInfo& x) {
  auto check = caf::meta::load_callback(
      [&]() -> caf::error { return valid(x.state) ? caf::error{} : caf::make_error(caf::sec::invalid_argument); });
  return f(caf::meta::type_name("memlend.mirror"), x.vm, x.mib, x.path, x.state, check);
}

}  // namespace memlend
