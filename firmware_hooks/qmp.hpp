// QEMU's machine protocol (QMP): how memlend grows and shrinks a real guest's
// lent memory, through the requested size of its virtio-mem device.
//
// QEMU is another process, and what it sends is parsed like anything from a
// peer: every read waits until a deadline and no longer, a line may be at most
// Limits::max_line bytes and nest Limits::max_depth levels, and a line that is
// not a QMP message is an error value, never a crash or an exception.
#pragma once

#include "core/expected.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memlend::qmp {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

struct Limits {
  // QEMU's longest answers to what memlend asks (query-memory-devices of a
  // machine with many devices) are a few KiB; the schema, never asked, is 200.
  std::size_t max_line = 1 << 20;
  std::size_t max_depth = 32;
  // Events nobody takes are dropped oldest first past this many.
  std::size_t max_events = 256;
};

// One line from QEMU, sorted by what it is.
struct Message {
  enum class Kind { greeting, reply, error, event };
  Kind kind = Kind::reply;
  // greeting: the "QMP" object; reply: the "return" value; error: the "error"
  // object (with string "class" and "desc"); event: its "data" (null without).
  nlohmann::json body;
  std::string event;                // an event's name
  std::optional<std::uint64_t> id;  // a reply's or an error's id, when it is ours (an unsigned integer)
};

// A line without its end (a trailing '\r' is fine). ErrorCode::invalid_input
// for anything but a QMP message.
Expected<Message> parse_line(std::string_view line, std::size_t max_depth = Limits{}.max_depth);

struct Event {
  std::string name;
  nlohmann::json data;
};

// One QMP connection, used by one thread.
class Client {
 public:
  // Connects to QEMU's QMP socket (`-qmp unix:PATH,server=on,wait=off`),
  // trying again while it is not there yet (QEMU makes it a moment after it
  // starts) until the timeout; then the greeting and qmp_capabilities.
  static Expected<Client> connect(const std::string& socket_path, Millis timeout, Limits limits = {});
  // The same handshake over a socket already connected. The Client owns `fd`
  // from here, and closes it when the handshake fails too.
  static Expected<Client> over(int fd, Millis timeout, Limits limits = {});

  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client();

  // Runs `command` and returns what it returned. QEMU's own error comes back
  // as ErrorCode::refused with its class and description; a reply to an earlier
  // command that timed out is passed over; events read meanwhile are kept.
  Expected<nlohmann::json> execute(const std::string& command, const nlohmann::json& arguments = nullptr,
                                   Millis timeout = Millis(10000));
  // The events kept so far, oldest first; the Client forgets them.
  std::vector<Event> take_events();
  // The first kept or arriving event named `name` (the others stay kept).
  Expected<Event> wait_event(const std::string& name, Millis timeout);
  // The greeting's "QMP" object: QEMU's version and capabilities.
  const nlohmann::json& greeting() const { return greeting_; }

  // virtio-mem, by the device's id (`-device virtio-mem-pci,id=ID`): the
  // memory plugged into the guest now, from query-memory-devices.
  Expected<std::uint64_t> memory_device_size(const std::string& device_id, Millis timeout = Millis(10000));
  // Asks the guest to plug or unplug memory until `bytes` are plugged (qom-set
  // of requested-size) and waits until they are, or the timeout: the guest's
  // driver does the work, in steps, and may fail to unplug memory it uses.
  Expected<void> set_requested_size(const std::string& device_id, std::uint64_t bytes, Millis timeout);

 private:
  Client(int fd, Limits limits);
  Expected<void> handshake(Clock::time_point deadline);
  Expected<void> send(const nlohmann::json& message, Clock::time_point deadline);
  Expected<std::string> read_line(Clock::time_point deadline);
  Expected<Message> read_message(Clock::time_point deadline);
  void keep(Event event);

  int fd_ = -1;
  Limits limits_;
  std::string buffer_;       // bytes read beyond the last whole line
  std::size_t scanned_ = 0;  // how much of buffer_ holds no '\n'
  bool broken_ = false;      // the stream cannot be trusted any more: every call fails
  std::string broken_why_;
  std::deque<Event> events_;
  std::uint64_t next_id_ = 1;
  nlohmann::json greeting_;
};

}  // namespace memlend::qmp
