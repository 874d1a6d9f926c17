// Hysteresis for telemetry: a VM is needy only after `samples` consecutive
// samples say so, and no longer needy only after as many say it is not, so a
// single spike neither borrows memory nor gives it back.
#pragma once

#include <cstdint>

namespace memlend::policy {

class Hysteresis {
 public:
  enum class Change { none, raised, cleared };

  explicit Hysteresis(std::int64_t samples) : samples_(samples < 1 ? 1 : samples) {}

  Change sample(bool condition);
  bool active() const { return active_; }
  // Consecutive samples that disagree with the current state.
  std::int64_t streak() const { return streak_; }
  // For restoring a restarted actor.
  void restore(bool active, std::int64_t streak) {
    active_ = active;
    streak_ = streak;
  }

 private:
  std::int64_t samples_;
  std::int64_t streak_ = 0;
  bool active_ = false;
};

}  // namespace memlend::policy
