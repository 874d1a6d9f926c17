// How a controller is doing, as /readyz and systemd's STATUS= tell it. The
// pulse (an actor) writes it each time the actors answer; the HTTP server's
// threads read it; so it is guarded, and it holds facts with the time they
// were learnt, never a verdict that could go stale.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>

namespace memlend {

// One answer of the actors to the pulse: the planner's view, counted.
struct PulseReading {
  bool cluster = false;  // agents report the hosts; else the simulated platform does
  int hosts = 0;
  int hosts_up = 0;      // in cluster mode: hosts whose agent joined and still reports
  int leases_active = 0;
};

class Health {
 public:
  using Clock = std::chrono::steady_clock;
  // Without an answer for this long the actors are wedged, or too busy to
  // serve: several pulse periods, so one slow answer is not a verdict.
  static constexpr auto alive_within = std::chrono::seconds(5);

  enum class Store { opening, open, none };

  void set_store(Store s) {
    std::lock_guard<std::mutex> lock(mutex_);
    store_ = s;
  }
  void answered(const PulseReading& r, Clock::time_point now) {
    std::lock_guard<std::mutex> lock(mutex_);
    last_ = r;
    answered_at_ = now;
  }
  void stopping() {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }

  // Why the controller is not ready, in one line; nothing when it is: the
  // store is open (or the run keeps none), the actors answered within
  // alive_within, and in cluster mode at least one agent is connected.
  std::optional<std::string> not_ready(Clock::time_point now) const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) return "stopping";
    if (store_ == Store::opening) return "starting: the store is not open yet";
    if (!answered_at_) return "starting: the actors have not answered yet";
    auto silent = std::chrono::duration_cast<std::chrono::seconds>(now - *answered_at_);
    if (silent > alive_within)
      return "the actors have not answered for " + std::to_string(silent.count()) + " s";
    if (last_.cluster && last_.hosts_up == 0)
      return "no agent connected (0 of " + std::to_string(last_.hosts) + " hosts)";
    return std::nullopt;
  }

  // What systemd shows under `systemctl status`, as a person reads it.
  std::string status() const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!answered_at_) return "controller: starting";
    std::string leases = std::to_string(last_.leases_active) + (last_.leases_active == 1 ? " lease" : " leases");
    std::string hosts = last_.cluster ? std::to_string(last_.hosts_up) + " of " + std::to_string(last_.hosts) +
                                            " agents joined"
                                      : std::to_string(last_.hosts_up) + " of " + std::to_string(last_.hosts) +
                                            " simulated hosts up";
    return "controller: " + hosts + ", " + leases + " active";
  }

 private:
  mutable std::mutex mutex_;
  Store store_ = Store::opening;
  std::optional<Clock::time_point> answered_at_;
  PulseReading last_;
  bool stopping_ = false;
};

}  // namespace memlend
