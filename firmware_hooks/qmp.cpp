#include "firmware_hooks/qmp.hpp"

#include "core/text.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <thread>
#include <unistd.h>

namespace memlend::qmp {

using nlohmann::json;

namespace {

// What QEMU sent, for a message: one line, and short, since it may be anything.
std::string excerpt(std::string_view text) {
  constexpr std::size_t shown = 120;
  if (text.size() <= shown) return "'" + one_line(text) + "'";
  return "'" + one_line(text.substr(0, shown)) + "...' (" + std::to_string(text.size()) + " bytes)";
}

std::string system_error(const std::string& what, int err) { return what + ": " + std::strerror(err); }

// Rounded up, so that a wait that times out has really reached its deadline.
int ms_until(Clock::time_point deadline) {
  auto left = std::chrono::ceil<Millis>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

// Whether `events` came before the deadline; a hang-up or an error counts, so
// that the recv or send after it says which.
Expected<void> ready(int fd, short events, Clock::time_point deadline, const char* what) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, ms_until(deadline));
    if (n > 0) return {};
    if (n == 0) return Error{std::string("QMP: timed out waiting to ") + what, ErrorCode::timed_out};
    if (errno != EINTR) return Error{system_error(std::string("QMP: poll to ") + what, errno), ErrorCode::io};
  }
}

// nlohmann's parser would nest as deep as the input asks (and its values are
// freed recursively): depth is counted first, outside strings, on the raw bytes.
bool nests_within(std::string_view text, std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return false;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return true;
}

const json* member(const json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

Error not_qmp(std::string_view line, const std::string& why) {
  return Error{"QMP: " + why + ": " + excerpt(line), ErrorCode::invalid_input};
}

// Device sizes are byte counts: QEMU sends them as unsigned integers.
std::optional<std::uint64_t> unsigned_member(const json& object, const char* key) {
  const json* v = object.is_object() ? member(object, key) : nullptr;
  if (!v || !v->is_number_unsigned()) return std::nullopt;
  return v->get<std::uint64_t>();
}

}  // namespace

Expected<Message> parse_line(std::string_view line, std::size_t max_depth) {
  if (!nests_within(line, max_depth))
    return not_qmp(line, "nested deeper than " + std::to_string(max_depth) + " levels");
  json j = json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded()) return not_qmp(line, "not JSON");
  if (!j.is_object()) return not_qmp(line, "not a JSON object");
  Message m;
  if (const json* id = member(j, "id"); id && id->is_number_unsigned()) m.id = id->get<std::uint64_t>();
  if (const json* v = member(j, "return")) {
    m.kind = Message::Kind::reply;
    m.body = std::move(*v);
  } else if (const json* e = member(j, "error")) {
    const json* cls = e->is_object() ? member(*e, "class") : nullptr;
    const json* desc = e->is_object() ? member(*e, "desc") : nullptr;
    if (!cls || !cls->is_string() || !desc || !desc->is_string())
      return not_qmp(line, "an error without a string class and desc");
    m.kind = Message::Kind::error;
    m.body = std::move(*e);
  } else if (const json* name = member(j, "event")) {
    if (!name->is_string()) return not_qmp(line, "an event whose name is not a string");
    m.kind = Message::Kind::event;
    m.event = name->get<std::string>();
    if (const json* data = member(j, "data")) m.body = std::move(*data);
  } else if (const json* qmp = member(j, "QMP")) {
    if (!qmp->is_object()) return not_qmp(line, "a greeting that is not an object");
    m.kind = Message::Kind::greeting;
    m.body = std::move(*qmp);
  } else {
    return not_qmp(line, "neither a return, an error, an event nor a greeting");
  }
  return m;
}

Client::Client(int fd, Limits limits) : fd_(fd), limits_(limits) {}

Client::Client(Client&& other) noexcept { *this = std::move(other); }

Client& Client::operator=(Client&& other) noexcept {
  if (this == &other) return *this;
  if (fd_ >= 0) ::close(fd_);
  fd_ = std::exchange(other.fd_, -1);
  limits_ = other.limits_;
  buffer_ = std::move(other.buffer_);
  scanned_ = other.scanned_;
  broken_ = other.broken_;
  broken_why_ = std::move(other.broken_why_);
  events_ = std::move(other.events_);
  next_id_ = other.next_id_;
  greeting_ = std::move(other.greeting_);
  return *this;
}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

Expected<Client> Client::connect(const std::string& socket_path, Millis timeout, Limits limits) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path)
    return Error{"QMP socket " + excerpt(socket_path) + ": not a usable unix socket path", ErrorCode::invalid_input};
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  auto deadline = Clock::now() + timeout;
  for (;;) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Error{system_error("QMP: socket", errno), ErrorCode::io};
    // A unix socket connects at once or not at all: no need to poll for it.
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0)
      return over(fd, Millis(ms_until(deadline)), limits);
    int err = errno;
    ::close(fd);
    bool not_yet = err == ENOENT || err == ECONNREFUSED || err == EAGAIN;
    if (!not_yet) return Error{system_error("QMP: connect to " + socket_path, err), ErrorCode::io};
    if (Clock::now() >= deadline)
      return Error{system_error("QMP: connect to " + socket_path + " timed out", err), ErrorCode::timed_out};
    std::this_thread::sleep_for(Millis(20));
  }
}

Expected<Client> Client::over(int fd, Millis timeout, Limits limits) {
  Client c(fd, limits);
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
    return Error{system_error("QMP: fcntl", errno), ErrorCode::io};
  auto done = c.handshake(Clock::now() + timeout);
  if (!done) return done.error();
  return c;
}

Expected<void> Client::handshake(Clock::time_point deadline) {
  auto first = read_message(deadline);
  if (!first) return first.error();
  if (first->kind != Message::Kind::greeting) {
    broken_ = true;
    broken_why_ = "QMP: the first message was not QEMU's greeting";
    return Error{broken_why_, ErrorCode::invalid_input};
  }
  greeting_ = std::move(first->body);
  auto caps = execute("qmp_capabilities", nullptr, Millis(ms_until(deadline)));
  if (!caps) return caps.error();
  return {};
}

Expected<void> Client::send(const json& message, Clock::time_point deadline) {
  // Strings memlend passes (a device id) need not be UTF-8; dump() would throw.
  std::string text = message.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::size_t sent = 0;
  while (sent < text.size()) {
    ssize_t n = ::send(fd_, text.data() + sent, text.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      broken_ = true;
      broken_why_ = system_error("QMP: send", errno);
      return Error{broken_why_, ErrorCode::unavailable};
    }
    auto can = ready(fd_, POLLOUT, deadline, "send");
    if (!can) return can.error();
  }
  return {};
}

Expected<std::string> Client::read_line(Clock::time_point deadline) {
  for (;;) {
    auto end = buffer_.find('\n', scanned_);
    if (end != std::string::npos && end <= limits_.max_line) {
      std::string line = buffer_.substr(0, end);
      buffer_.erase(0, end + 1);
      scanned_ = 0;
      return line;
    }
    scanned_ = buffer_.size();
    // There is no telling where the next message starts in a line cut short.
    if (end != std::string::npos || buffer_.size() > limits_.max_line) {
      broken_ = true;
      broken_why_ = "QMP: QEMU sent a line longer than " + std::to_string(limits_.max_line) + " bytes";
      return Error{broken_why_, ErrorCode::invalid_input};
    }
    auto can = ready(fd_, POLLIN, deadline, "read");
    if (!can) return can.error();
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
    } else if (n == 0) {
      broken_ = true;
      broken_why_ = "QMP: QEMU closed the connection";
      return Error{broken_why_, ErrorCode::unavailable};
    } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
      broken_ = true;
      broken_why_ = system_error("QMP: recv", errno);
      return Error{broken_why_, ErrorCode::unavailable};
    }
  }
}

Expected<Message> Client::read_message(Clock::time_point deadline) {
  if (broken_) return Error{broken_why_, ErrorCode::unavailable};
  auto line = read_line(deadline);
  if (!line) return line.error();
  return parse_line(*line, limits_.max_depth);
}

void Client::keep(Event event) {
  events_.push_back(std::move(event));
  while (events_.size() > limits_.max_events) events_.pop_front();
}

Expected<json> Client::execute(const std::string& command, const json& arguments, Millis timeout) {
  if (broken_) return Error{broken_why_, ErrorCode::unavailable};
  auto deadline = Clock::now() + timeout;
  std::uint64_t id = next_id_++;
  json request = {{"execute", command}, {"id", id}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  auto sent = send(request, deadline);
  if (!sent) return sent.error();
  for (;;) {
    auto m = read_message(deadline);
    if (!m) return Error{command + ": " + m.error().message, m.error().code};
    if (m->kind == Message::Kind::event) {
      keep(Event{std::move(m->event), std::move(m->body)});
      continue;
    }
    if (m->id != id) continue;  // the answer to an earlier command that timed out
    if (m->kind == Message::Kind::reply) return std::move(m->body);
    if (m->kind == Message::Kind::error)
      return Error{command + ": QEMU says " + excerpt(m->body["class"].get<std::string>()) + ": " +
                       excerpt(m->body["desc"].get<std::string>()),
                   ErrorCode::refused};
  }
}

std::vector<Event> Client::take_events() {
  std::vector<Event> out(std::make_move_iterator(events_.begin()), std::make_move_iterator(events_.end()));
  events_.clear();
  return out;
}

Expected<Event> Client::wait_event(const std::string& name, Millis timeout) {
  for (auto it = events_.begin(); it != events_.end(); ++it) {
    if (it->name != name) continue;
    Event e = std::move(*it);
    events_.erase(it);
    return e;
  }
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto m = read_message(deadline);
    if (!m) return Error{"waiting for " + name + ": " + m.error().message, m.error().code};
    if (m->kind != Message::Kind::event) continue;  // late replies: nobody waits for them now
    if (m->event == name) return Event{std::move(m->event), std::move(m->body)};
    keep(Event{std::move(m->event), std::move(m->body)});
  }
}

Expected<std::uint64_t> Client::memory_device_size(const std::string& device_id, Millis timeout) {
  auto devices = execute("query-memory-devices", nullptr, timeout);
  if (!devices) return devices.error();
  if (!devices->is_array())
    return Error{"query-memory-devices: QEMU returned " + excerpt(devices->dump()) + ", not a list",
                 ErrorCode::invalid_input};
  for (const json& d : *devices) {
    const json* data = d.is_object() ? member(d, "data") : nullptr;
    const json* id = data && data->is_object() ? member(*data, "id") : nullptr;
    if (!id || !id->is_string() || id->get<std::string>() != device_id) continue;
    auto size = unsigned_member(*data, "size");
    if (!size)
      return Error{"query-memory-devices: " + excerpt(device_id) + " has no size in bytes", ErrorCode::invalid_input};
    return *size;
  }
  return Error{"query-memory-devices: QEMU has no memory device " + excerpt(device_id), ErrorCode::failed};
}

Expected<void> Client::set_requested_size(const std::string& device_id, std::uint64_t bytes, Millis timeout) {
  auto start = Clock::now();
  auto deadline = start + timeout;
  auto left = [&] { return Millis(ms_until(deadline)); };
  constexpr const char* size_change = "MEMORY_DEVICE_SIZE_CHANGE";
  // Whether QEMU told of the size reached: a guest that powers off as soon as
  // its memory is gone may take QEMU with it before a query could ask.
  auto told = [&](const Event& e) {
    const json* id = e.data.is_object() ? member(e.data, "id") : nullptr;
    return e.name == size_change && id && id->is_string() && id->get<std::string>() == device_id &&
           unsigned_member(e.data, "size") == bytes;
  };
  auto told_in_kept = [&] {
    bool reached = false;
    for (auto& e : take_events())
      if (told(e))
        reached = true;
      else if (e.name != size_change)
        keep(std::move(e));
    return reached;
  };
  // The size changes of earlier requests say nothing of this one.
  (void)told_in_kept();
  auto set = execute("qom-set",
                     {{"path", "/machine/peripheral/" + device_id}, {"property", "requested-size"}, {"value", bytes}},
                     left());
  if (!set) return set.error();
  for (;;) {
    auto size = memory_device_size(device_id, left());
    if (told_in_kept() || (size && *size == bytes)) return {};
    if (!size) return size.error();
    if (Clock::now() >= deadline) {
      auto ms = std::chrono::duration_cast<Millis>(Clock::now() - start).count();
      return Error{"virtio-mem " + excerpt(device_id) + ": " + std::to_string(*size) + " bytes plugged, not the " +
                       std::to_string(bytes) + " requested, after " + std::to_string(ms) + " ms",
                   ErrorCode::timed_out};
    }
    // QEMU tells each step the guest takes; the query above is the truth, and
    // a lost event costs at most a second.
    auto woke = wait_event(size_change, std::min(left(), Millis(1000)));
    if (woke && told(*woke)) return {};
    if (!woke && woke.error().code != ErrorCode::timed_out) return woke.error();
  }
}

}  // namespace memlend::qmp
