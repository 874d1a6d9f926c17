// Errors are values: a result, or one line saying what is wrong and where
// with a code a caller can branch on. No exceptions cross a room or an actor.
#pragma once

#include "core/text.hpp"

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace memlend {

// What kind of failure, for the caller that must choose what to do next; the
// message is for the person. Most callers only pass an error on: `failed`.
enum class ErrorCode {
  failed,         // anything not named below
  invalid_input,  // a file, flag or message is wrong: the command exits 2
  refused,        // a peer or the store said no, for a reason it gave
  unavailable,    // a peer or resource cannot be reached now; trying later may work
  timed_out,      // a wait reached its deadline
  io,             // a system call on a file, socket or mapping failed
  lost,           // data that was expected is gone (a donor died, a file shrank)
};

std::string_view to_string(ErrorCode code);

struct Error {
  std::string message;
  ErrorCode code = ErrorCode::failed;
};

template <class T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}
  Expected(Error e) : v_(std::move(e)) {}
  explicit operator bool() const { return v_.index() == 0; }
  T& operator*() { return std::get<0>(v_); }
  const T& operator*() const { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Success with nothing to return: `return {};`.
template <>
class Expected<void> {
 public:
  Expected() = default;
  Expected(Error e) : error_(std::move(e)), failed_(true) {}
  explicit operator bool() const { return !failed_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool failed_ = false;
};

inline std::string_view to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::failed: return "failed";
    case ErrorCode::invalid_input: return "invalid_input";
    case ErrorCode::refused: return "refused";
    case ErrorCode::unavailable: return "unavailable";
    case ErrorCode::timed_out: return "timed_out";
    case ErrorCode::io: return "io";
    case ErrorCode::lost: return "lost";
  }
  return "failed";
}

}  // namespace memlend
