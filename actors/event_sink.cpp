#include "actors/event_sink.hpp"

#include "core/log.hpp"
#include "journal/journal.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <unistd.h>

namespace memlend {

namespace {

using self_ptr = sink_actor::stateful_pointer<sink_state>;

// How bad an event is for the operator who reads the log: memory gone (or no
// longer copied) is an error, and its text says so; a failure memlend covered
// (from the mirror, by a new donor) or a need it could not meet is a warning;
// the rest is what it does.
log::Level level_of(const LogEvent& e) {
  log::Level said = log::level_of_line(e.text);
  if (e.event == "memory_lost") return log::Level::error;
  for (const char* w : {"donor_failed", "failover_to_mirror", "memory_reclaimed", "unsatisfied"})
    if (e.event == w) return std::max(said, log::Level::warn);
  return said;
}

log::Fields fields_of(const LogEvent& e) {
  log::Fields f;
  f.event = e.event;
  f.vm = e.vm;
  f.host = e.host;
  f.donor = e.donor;
  f.lease = e.lease;
  f.t_s = e.t_s;
  return f;
}

void write_out(self_ptr self, const LogEvent& e) {
  auto& st = self->state;
  // A line without an event name is for the console only.
  if (st.out && !e.event.empty()) {
    std::string line = event_json_line(e) + '\n';
    std::fwrite(line.data(), 1, line.size(), st.out.get());
    std::fflush(st.out.get());
  }
  if (st.options.console && !e.text.empty() && log::to_collector()) {
    log::write(level_of(e), fields_of(e), e.text);
  } else if (st.options.console && !e.text.empty()) {
    char stamp[32];
    std::snprintf(stamp, sizeof stamp, "[t=%5.0fs] ", e.t_s);
    std::cout << stamp << e.text << '\n' << std::flush;
  }
  if (st.options.capture && !e.event.empty()) st.options.capture->push_back(e);
  // Counted once written, so the counters agree with the log an operator reads.
  if (st.options.metrics && !e.event.empty()) self->send(st.options.metrics, atom::event::value, e);
}

}  // namespace

sink_actor::behavior_type event_sink(sink_actor::stateful_pointer<sink_state> self, SinkOptions options) {
  self->state.options = options;
  if (!options.events_out.empty()) {
    auto fd = open_events_file(options.events_out, EventsFile::keep);
    if (fd) self->state.out.reset(::fdopen(*fd, "a"));
    if (!fd || !self->state.out) {
      if (fd) ::close(*fd);
      LogEvent why;
      why.text = "error: --events-out: " + (fd ? options.events_out + ": cannot write" : fd.error().message);
      write_out(self, why);
    }
  }
  return {
      [=](atom::event, const LogEvent& e) {
        auto store = self->state.options.store;
        if (!store || e.event.empty()) return write_out(self, e);
        store::Batch b(e.t_s);
        b.event(event_record(e));
        auto me = caf::actor_cast<sink_actor>(self);
        auto queued = store->submit(std::move(b), [me, e](const store::Outcome& o) {
          if (o.ok()) caf::anon_send(me, atom::event::value, atom::commit::value, e);
        });
        if (!queued) {
          LogEvent why;
          why.t_s = e.t_s;
          why.text = "error: the store did not record " + e.event + ": " + queued.error().message;
          write_out(self, why);
        }
      },
      [=](atom::event, atom::commit, const LogEvent& e) { write_out(self, e); },
      [=](atom::flush) {
        // What the store still holds back is written out before this answer.
        if (self->state.options.store) self->state.options.store->flush();
        if (self->state.out) std::fflush(self->state.out.get());
        std::cout << std::flush;
        return true;
      },
  };
}

}  // namespace memlend
