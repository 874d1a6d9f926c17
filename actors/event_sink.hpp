// The event log's one writer: JSON lines to --events-out, plain lines to the
// console (or, when a collector takes the log, events with their fields to
// memlend::log), and (for tests) a copy in memory. One actor, so lines never
// interleave.
#pragma once

#include "actors/actors.hpp"
#include "persistence/store.hpp"

#include <caf/fwd.hpp>
#include <caf/typed_event_based_actor.hpp>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace memlend {

struct SinkOptions {
  std::string events_out;  // empty: no file
  bool console = true;
  std::shared_ptr<std::vector<LogEvent>> capture;  // tests read what was logged
  metrics_actor metrics;  // none: no metrics; else it counts every event
  // With a store every event is written there first, and out (file, console)
  // only once durable, in the store's order.
  std::shared_ptr<store::Store> store;
};

struct sink_state {
  static constexpr const char* name = "event_sink";
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  std::unique_ptr<std::FILE, Closer> out;
  SinkOptions options;
};

sink_actor::behavior_type event_sink(sink_actor::stateful_pointer<sink_state> self, SinkOptions options);

}  // namespace memlend
