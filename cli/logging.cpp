#include "cli/logging.hpp"

#include <spdlog/details/log_msg.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <sys/stat.h>

namespace memlend::cli {

namespace {

// sd-daemon(3) priorities: what journald reads from a "<N>" prefix.
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

// One event, one line: a message holding a newline would otherwise read as
// two events in the journal.
class LineSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit LineSink(bool journal) : journal_(journal) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string text(msg.payload.data(), msg.payload.size());
    for (char& c : text)
      if (c == '\n' || c == '\r') c = ' ';
    std::string line;
    if (journal_) {
      line = "<" + std::to_string(syslog_priority(msg.level)) + ">" + text + "\n";
    } else {
      spdlog::memory_buf_t stamp;
      formatter_->format(msg, stamp);
      line.assign(stamp.data(), stamp.size());
      line += text + "\n";
    }
    std::fwrite(line.data(), 1, line.size(), stderr);
  }
  void flush_() override { std::fflush(stderr); }

 private:
  bool journal_;
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

CLI::Option* add_log_level(CLI::App* cmd, std::string& level, std::string_view fallback) {
  level = std::string(fallback);
  std::vector<std::string> names(std::begin(log_levels), std::end(log_levels));
  return cmd
      ->add_option("--log-level", level,
                   "Log events at this level and above to stderr: trace, debug, info, warn, error\n"
                   "or off (default " + std::string(fallback) + ")")
      ->check(CLI::IsMember(names));
}

void setup_logging(std::string_view level) {
  auto sink = std::make_shared<LineSink>(stderr_is_journal());
  // The time stamp and level only; the sink appends the message itself.
  sink->set_formatter(std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%eZ %l ",
                                                                  spdlog::pattern_time_type::utc, ""));
  auto logger = std::make_shared<spdlog::logger>("memlend", sink);
  logger->set_level(spdlog::level::from_str(std::string(level)));
  // Warnings and errors reach the journal at once, even if memlend then dies.
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
}

}  // namespace memlend::cli
