// SIGINT and SIGTERM end memlend's long-running commands in order. They must
// be blocked in every thread but the one that waits for them: every thread
// inherits the mask of the thread that made it, and a thread that takes one
// dies by its default action, without cleaning up.
#pragma once

#include <csignal>

#include <chrono>

namespace memlend {

inline sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// Waits up to `most` for one of them (blocked in this thread, as they are in
// every thread of the long-running commands); true when one came.
inline bool stop_signal_within(std::chrono::milliseconds most) {
  sigset_t set = stop_signals();
  timespec wait{static_cast<time_t>(most.count() / 1000), static_cast<long>((most.count() % 1000) * 1000000)};
  int sig = sigtimedwait(&set, nullptr, &wait);
  return sig == SIGINT || sig == SIGTERM;
}

// Blocks them in this thread (and so in the threads it makes) for its
// lifetime, then restores the mask it found.
class StopSignalsBlocked {
 public:
  StopSignalsBlocked() {
    sigset_t set = stop_signals();
    pthread_sigmask(SIG_BLOCK, &set, &was_);
  }
  ~StopSignalsBlocked() { pthread_sigmask(SIG_SETMASK, &was_, nullptr); }
  StopSignalsBlocked(const StopSignalsBlocked&) = delete;
  StopSignalsBlocked& operator=(const StopSignalsBlocked&) = delete;

 private:
  sigset_t was_;
};

}  // namespace memlend
