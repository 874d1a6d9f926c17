#include "cli/logging.hpp"

#include "core/log.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/details/log_msg.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
// Else every entry would carry CODE_FILE=cli/logging.cpp: where the sink is,
// not where the event was.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <mutex>
#include <sys/stat.h>
#include <sys/uio.h>
#include <vector>

namespace memlend::cli {

namespace {

// sd-daemon(3) priorities: what journald reads from a "<N>" prefix or PRIORITY=.
int syslog_priority(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace:
    case spdlog::level::debug: return 7;
    case spdlog::level::info: return 6;
    case spdlog::level::warn: return 4;
    case spdlog::level::err: return 3;
    case spdlog::level::critical: return 2;
    default: return 6;
  }
}

spdlog::level::level_enum spdlog_level(log::Level l) {
  switch (l) {
    case log::Level::trace: return spdlog::level::trace;
    case log::Level::debug: return spdlog::level::debug;
    case log::Level::info: return spdlog::level::info;
    case log::Level::warn: return spdlog::level::warn;
    case log::Level::error: return spdlog::level::err;
  }
  return spdlog::level::info;
}

// The names --log-level takes, so that a reader filters with the words it set.
const char* level_name(spdlog::level::level_enum l) {
  switch (l) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "info";
  }
}

// The fields of the event spdlog is writing on this thread: memlend::log puts
// them here for the length of its (synchronous) call into the logger, which
// has no place of its own for them. Null for a plain spdlog call.
thread_local const log::Fields* current_fields = nullptr;

void write_event(log::Level level, const log::Fields& fields, std::string_view message) {
  auto* logger = spdlog::default_logger_raw();
  auto l = spdlog_level(level);
  if (!logger->should_log(l)) return;
  struct Carry {
    const log::Fields* was = current_fields;
    explicit Carry(const log::Fields& f) { current_fields = &f; }
    ~Carry() { current_fields = was; }
  } carry(fields);
  logger->log(l, spdlog::string_view_t(message.data(), message.size()));
}

// RFC 3339 in UTC with milliseconds: 2026-11-22T14:00:19.981Z.
std::string utc_time(spdlog::log_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t s = static_cast<std::time_t>(ms / 1000);
  long frac = static_cast<long>(ms % 1000);
  if (frac < 0) {
    frac += 1000;
    --s;
  }
  std::tm tm{};
  gmtime_r(&s, &tm);
  char buf[80];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", s);
  return buf;
}

std::string json_line(const spdlog::details::log_msg& msg, std::string_view text, const log::Fields* f) {
  nlohmann::ordered_json j;
  j["time"] = utc_time(msg.time);
  j["level"] = level_name(msg.level);
  j["message"] = text;
  if (f) {
    if (!f->event.empty()) j["event"] = f->event;
    if (!f->vm.empty()) j["vm"] = f->vm;
    if (!f->host.empty()) j["host"] = f->host;
    if (!f->donor.empty()) j["donor"] = f->donor;
    if (f->lease) j["lease"] = f->lease;
    // To the millisecond, as the journal's MEMLEND_T_S: 220.09, not 220.09022319999997.
    if (f->t_s) j["t_s"] = std::round(*f->t_s * 1000) / 1000;
  }
  // A name from a scenario file need not be UTF-8; the event still goes out.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// Where sd_journal_sendv sends, fixed in libsystemd.
constexpr const char* journal_socket = "/run/systemd/journal/socket";

// journald's native protocol, through libsystemd: false when the journal's
// socket did not take the event.
bool send_to_journal(const spdlog::details::log_msg& msg, std::string_view text, const log::Fields* f) {
  // libsystemd reports success when the socket is missing (journald gone,
  // a container without it): the event would be lost without a word.
  struct stat st {};
  if (::stat(journal_socket, &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  std::vector<std::string> fields;
  fields.push_back("MESSAGE=" + std::string(text));
  fields.push_back("PRIORITY=" + std::to_string(syslog_priority(msg.level)));
  fields.push_back("SYSLOG_IDENTIFIER=memlend");
  if (f) {
    auto add = [&](const char* key, const std::string& value) {
      if (!value.empty()) fields.push_back(std::string(key) + "=" + value);
    };
    add("MEMLEND_EVENT", f->event);
    add("MEMLEND_VM", f->vm);
    add("MEMLEND_HOST", f->host);
    add("MEMLEND_DONOR", f->donor);
    if (f->lease) add("MEMLEND_LEASE", std::to_string(f->lease));
    if (f->t_s) add("MEMLEND_T_S", seconds_text(*f->t_s));
  }
  std::vector<iovec> iov;
  for (auto& s : fields) iov.push_back({s.data(), s.size()});
  return sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0;
}

std::string one_line(std::string_view text) {
  std::string s(text);
  for (char& c : s)
    if (c == '\n' || c == '\r') c = ' ';
  return s;
}

enum class Output { terminal, journal, json };

class EventSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit EventSink(Output out) : out_(out) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string_view text(msg.payload.data(), msg.payload.size());
    const log::Fields* f = current_fields;
    std::string line;
    switch (out_) {
      case Output::json:
        line = json_line(msg, one_line(text), f);
        break;
      case Output::journal:
        // The journal keeps an event whole, newlines and all.
        if (send_to_journal(msg, text, f)) return;
        line = "<" + std::to_string(syslog_priority(msg.level)) + ">" + one_line(text) + "\n";
        break;
      case Output::terminal:
        line = utc_time(msg.time) + " " + std::string(spdlog::level::to_string_view(msg.level).data(),
                                                      spdlog::level::to_string_view(msg.level).size()) +
               " " + one_line(text) + "\n";
        break;
    }
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }

 private:
  Output out_;
};

}  // namespace

bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (!stream) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(2, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

void add_log_flags(CLI::App* cmd, LogFlags& flags, std::string_view fallback) {
  flags.level = std::string(fallback);
  std::vector<std::string> levels(std::begin(log_levels), std::end(log_levels));
  cmd->add_option("--log-level", flags.level,
                  "Log events at this level and above to stderr: trace, debug, info, warn, error\n"
                  "or off (default " + std::string(fallback) + ")")
      ->check(CLI::IsMember(levels));
  std::vector<std::string> formats(std::begin(log_formats), std::end(log_formats));
  cmd->add_option("--log-format", flags.format,
                  "text: one line per event (under systemd, into the journal with its fields,\n"
                  "MEMLEND_VM= and so on); json: one JSON object per line on stderr (default text)")
      ->check(CLI::IsMember(formats));
}

void setup_logging(const LogFlags& flags) {
  Output out = flags.format == "json" ? Output::json : stderr_is_journal() ? Output::journal : Output::terminal;
  auto logger = std::make_shared<spdlog::logger>("memlend", std::make_shared<EventSink>(out));
  logger->set_level(spdlog::level::from_str(flags.level));
  // Warnings and errors reach the journal at once, even if memlend then dies.
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  log::install(write_event, out != Output::terminal);
}

}  // namespace memlend::cli
