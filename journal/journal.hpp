// Between the actors and the store: the store's rows for what the actors
// hold (leases, mirrors, events), and back again for recovery. Plain C++.
#pragma once

#include "core/facts.hpp"
#include "policy/model.hpp"
#include "persistence/store.hpp"

#include <optional>
#include <string>

namespace memlend {

// The JSON line of one event (DESIGN.md, "Event log").
std::string event_json_line(const LogEvent& e);
store::LeaseRecord lease_record(const LeaseInfo& l);
LeaseInfo lease_info(const store::LeaseRecord& r);
store::EventRecord event_record(const LogEvent& e);
LogEvent log_event(const store::EventRecord& r);
// Opens the `--events-out` file for reading and appending, creating it, and
// emptied first when asked. Never through a symbolic link: memlend often runs
// as root, and a link planted where the log goes would have it truncate and
// fill the link's target. Only a regular file (a FIFO would block the event
// sink). The descriptor is the caller's to close; the error is one line
// naming the file.
enum class EventsFile { keep, empty };
Expected<int> open_events_file(const std::string& path, EventsFile mode);
// A killed run may have made events durable it had not yet written to the
// `--events-out` file: brings the file up to the store's event log (a half-
// written last line is cut first). Returns an error line, or nothing.
std::optional<std::string> catch_up_events_file(const std::string& path, const store::Store& store);
store::HostRecord host_record(const policy::Host& h, policy::HostId id, bool up);
// The host a record keeps (a host that joined at run time has no other source).
policy::Host host_of_record(const store::HostRecord& r);
// A digest of the scenario text: a store holds one scenario's state only.
std::string scenario_fingerprint(const std::string& scenario_text);

}  // namespace memlend
