#include "policy/detection.hpp"

namespace memlend::policy {

Hysteresis::Change Hysteresis::sample(bool condition) {
  if (condition == active_) {
    streak_ = 0;
    return Change::none;
  }
  if (++streak_ < samples_) return Change::none;
  streak_ = 0;
  active_ = condition;
  return active_ ? Change::raised : Change::cleared;
}

}  // namespace memlend::policy
