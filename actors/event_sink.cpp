#include "actors/event_sink.hpp"

#include "journal/journal.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <unistd.h>

namespace memlend {

namespace {

using self_ptr = sink_actor::stateful_pointer<sink_state>;

void write_out(self_ptr self, const LogEvent& e) {
  auto& st = self->state;
  // A line without an event name is for the console only.
  if (st.out && !e.event.empty()) {
    std::string line = event_json_line(e) + '\n';
    std::fwrite(line.data(), 1, line.size(), st.out.get());
    std::fflush(st.out.get());
  }
  if (st.options.console && !e.text.empty()) {
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
