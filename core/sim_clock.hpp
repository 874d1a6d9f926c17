// Scenario time. The platform's clock runs `speed` times faster than the
// actor clock, from `origin_s`; under CAF's test coordinator the actor clock
// is simulated too, so tests move scenario time exactly.
#pragma once

#include <caf/actor_clock.hpp>
#include <caf/timespan.hpp>

#include <chrono>
#include <cmath>

namespace memlend {

struct SimClock {
  caf::actor_clock::time_point start{};
  double speed = 1;
  double origin_s = 0;

  double now(const caf::actor_clock& c) const {
    return origin_s + std::chrono::duration<double>(c.now() - start).count() * speed;
  }
  // The actor-clock delay after which `seconds` of scenario time have passed.
  caf::timespan after(double seconds) const {
    double ns = std::max(0.0, seconds) / speed * 1e9;
    return caf::timespan(static_cast<caf::timespan::rep>(std::ceil(ns)));
  }
};

}  // namespace memlend
