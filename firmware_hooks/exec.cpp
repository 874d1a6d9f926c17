#include "firmware_hooks/exec.hpp"
#include "firmware_hooks/program.hpp"

#include "core/text.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <limits>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace memlend::platform {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;

namespace {

// The schema is three levels deep; the margin is for keys a hook adds and
// memlend ignores. Bounded so that no input nests a value without end.
constexpr int max_depth = 16;
// Names go back to the hooks as arguments and into messages and metrics.
constexpr std::size_t max_name = 255;
constexpr std::size_t max_reason = 200;
// 2^40 MiB is an exabyte: larger is a wrong number, and would overflow sums.
constexpr std::uint64_t max_mib = std::uint64_t(1) << 40;
constexpr std::uint64_t max_cpus = 1 << 16;
constexpr std::uint64_t max_mhz = std::uint64_t(1) << 32;
constexpr std::uint64_t max_count = std::numeric_limits<std::uint64_t>::max();

// Why `name` cannot stand for a VM or a host, or nothing. A leading '-' would
// read as an option to a hook that parses its arguments with getopt.
std::optional<std::string> name_problem(std::string_view name, bool may_be_empty = false) {
  if (name.empty()) return may_be_empty ? std::nullopt : std::optional<std::string>("empty");
  if (name.size() > max_name) return "longer than " + std::to_string(max_name) + " bytes";
  if (name.front() == '-') return std::string("starts with '-'");
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7f) return std::string("holds a control character");
  return std::nullopt;
}

// A hook's first line of output, fit for a message: control characters and
// bytes past ASCII escaped (it may be anything), and short.
std::string reason_line(std::string_view out) {
  std::string_view first = out.substr(0, out.find('\n'));
  if (!first.empty() && first.back() == '\r') first.remove_suffix(1);
  bool cut = first.size() > max_reason;
  std::string shown;
  for (unsigned char c : one_line(first.substr(0, max_reason))) {
    if (c < 0x80) {
      shown += static_cast<char>(c);
      continue;
    }
    char hex[8];
    std::snprintf(hex, sizeof hex, "\\x%02x", c);
    shown += hex;
  }
  return cut ? shown + "..." : shown;
}

// ---- telemetry --------------------------------------------------------------

Error bad(const std::string& where, const std::string& what) {
  return Error{"telemetry: " + where + ": " + what, ErrorCode::invalid_input};
}

// One object of the document, read key by key into a reading. The first
// problem found is kept and the later reads do nothing, so that a caller reads
// every key and asks once.
class Fields {
 public:
  Fields(const json& object, std::string path) : object_(object), path_(std::move(path)) {}

  const std::optional<Error>& error() const { return error_; }
  std::string where(const char* key) const { return path_ + "." + key; }

  void name(const char* key, std::string& out) {
    const json* v = required(key);
    if (!v) return;
    if (!v->is_string()) return fail(key, "not a string");
    out = v->get<std::string>();
    if (auto why = name_problem(out)) fail(key, in_quotes(out.substr(0, max_name)) + ": " + *why);
  }

  void flag(const char* key, bool& out) {
    const json* v = optional(key);
    if (!v) return;
    if (!v->is_boolean()) return fail(key, "not true or false");
    out = v->get<bool>();
  }

  template <class Int>
  void whole(const char* key, Int& out, std::uint64_t max, std::uint64_t min = 0) {
    if (const json* v = required(key)) read_whole(key, *v, out, max, min);
  }

  template <class Int>
  void whole(const char* key, std::optional<Int>& out, std::uint64_t max) {
    const json* v = optional(key);
    if (!v) return;
    Int n{};
    if (read_whole(key, *v, n, max, 0)) out = n;
  }

  void real(const char* key, std::optional<double>& out, double max = std::numeric_limits<double>::max()) {
    const json* v = optional(key);
    if (!v) return;
    if (!v->is_number() || !(v->get<double>() >= 0) || !std::isfinite(v->get<double>()))
      return fail(key, "not a non-negative number");
    if (v->get<double>() > max) return fail(key, "more than " + std::to_string(static_cast<long long>(max)));
    out = v->get<double>();
  }

  // Sums and shares the readings imply: a hook that breaks them read wrongly.
  void at_most(const char* key, std::int64_t value, const char* bound_key, std::int64_t bound) {
    if (!error_ && value > bound)
      fail(key, std::to_string(value) + " is more than " + bound_key + " (" + std::to_string(bound) + ")");
  }

 private:
  const json* optional(const char* key) {
    if (error_) return nullptr;
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  const json* required(const char* key) {
    const json* v = optional(key);
    if (!v && !error_) fail(key, "missing");
    return v;
  }

  template <class Int>
  bool read_whole(const char* key, const json& v, Int& out, std::uint64_t max, std::uint64_t min) {
    std::uint64_t n = 0;
    std::string problem;
    if (v.is_number_unsigned())
      n = v.get<std::uint64_t>();
    else
      problem = "not a non-negative integer";  // a negative integer, a fraction, or no number
    if (problem.empty() && n > max) problem = "more than " + std::to_string(max);
    if (problem.empty() && n < min) problem = "less than " + std::to_string(min);
    if (!problem.empty()) {
      fail(key, problem);
      return false;
    }
    out = static_cast<Int>(n);
    return true;
  }

  void fail(const char* key, const std::string& what) {
    if (!error_) error_ = bad(where(key), what);
  }

  const json& object_;
  std::string path_;
  std::optional<Error> error_;
};

Expected<HostReading> read_host(const json& j) {
  if (!j.is_object()) return bad("host", "not an object");
  HostReading h;
  Fields f(j, "host");
  f.name("name", h.name);
  f.whole("memory_mib", h.memory_mib, max_mib);
  f.whole("available_mib", h.available_mib, max_mib);
  f.whole("cpus", h.cpus, max_cpus, 1);
  f.whole("cpu_mhz", h.cpu_mhz, max_mhz);
  f.real("cpu_busy_s", h.cpu_busy_s);
  f.real("cpu_total_s", h.cpu_total_s);
  f.real("memory_pressure_some", h.memory_pressure_some, 100);
  f.real("memory_pressure_full", h.memory_pressure_full, 100);
  f.real("cpu_pressure_some", h.cpu_pressure_some, 100);
  f.at_most("available_mib", h.available_mib, "host.memory_mib", h.memory_mib);
  if (f.error()) return *f.error();
  return h;
}

Expected<VmReading> read_vm(const json& j, const std::string& path) {
  if (!j.is_object()) return bad(path, "not an object");
  VmReading vm;
  Fields f(j, path);
  f.name("name", vm.name);
  f.flag("running", vm.running);
  f.whole("memory_mib", vm.memory_mib, max_mib);
  f.whole("vcpus", vm.vcpus, max_cpus);
  f.whole("plugged_mib", vm.plugged_mib, max_mib);
  f.whole("pluggable_mib", vm.pluggable_mib, max_mib);
  f.whole("balloon_mib", vm.balloon_mib, max_mib);
  f.whole("guest_available_mib", vm.guest_available_mib, max_mib);
  f.whole("guest_free_mib", vm.guest_free_mib, max_mib);
  f.whole("swap_in", vm.swap_in, max_count);
  f.whole("swap_out", vm.swap_out, max_count);
  f.whole("major_faults", vm.major_faults, max_count);
  f.whole("rss_mib", vm.rss_mib, max_mib);
  f.real("cpu_s", vm.cpu_s);
  f.real("cpu_throttled_s", vm.cpu_throttled_s);
  f.at_most("plugged_mib", vm.plugged_mib, (path + ".pluggable_mib").c_str(), vm.pluggable_mib);
  if (f.error()) return *f.error();
  return vm;
}

// nlohmann's message, without its exception's name and the token it last read
// (which may be a megabyte of string): "syntax error while parsing value -
// invalid literal".
std::string parse_problem(const json::exception& e) {
  std::string_view what = e.what();
  if (auto name_end = what.find("] "); name_end != std::string_view::npos) what.remove_prefix(name_end + 2);
  if (auto problem = what.find("syntax error"); problem != std::string_view::npos) what.remove_prefix(problem);
  what = what.substr(0, what.find("; last read"));
  return one_line(what.substr(0, 160));
}

// The document as JSON, or what keeps it from being one. Values nested deeper
// than max_depth are never built.
Expected<json> parse_document(std::string_view text) {
  // nlohmann's lexer stops at a NUL as at the end of the input.
  if (auto nul = text.find('\0'); nul != std::string_view::npos)
    return Error{"telemetry: not JSON: a NUL byte at byte " + std::to_string(nul), ErrorCode::invalid_input};
  bool too_deep = false;
  auto depth_check = [&](int depth, json::parse_event_t event, json&) {
    bool opens = event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (opens && depth >= max_depth) too_deep = true;
    return !too_deep;
  };
  json doc;
  try {
    doc = json::parse(text.begin(), text.end(), depth_check, true);
  } catch (const json::parse_error& e) {
    return Error{"telemetry: not JSON at byte " + std::to_string(e.byte) + ": " + parse_problem(e),
                 ErrorCode::invalid_input};
  } catch (const json::exception& e) {
    return Error{"telemetry: not JSON: " + parse_problem(e), ErrorCode::invalid_input};
  }
  if (too_deep)
    return Error{"telemetry: nested deeper than " + std::to_string(max_depth) + " levels", ErrorCode::invalid_input};
  return doc;
}

}  // namespace

Expected<NodeReading> parse_exec_telemetry(std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos)
    return Error{"telemetry: printed nothing (one JSON document expected)", ErrorCode::invalid_input};
  auto doc = parse_document(text);
  if (!doc) return doc.error();
  if (!doc->is_object()) return Error{"telemetry: not a JSON object", ErrorCode::invalid_input};

  auto version = doc->find("version");
  if (version == doc->end()) return bad("version", "missing");
  if (!version->is_number_integer()) return bad("version", "not an integer");
  if (!version->is_number_unsigned() || version->get<std::uint64_t>() != exec_telemetry_version)
    return Error{"telemetry: version " + version->dump() + " is not one this memlend reads (it reads version " +
                     std::to_string(exec_telemetry_version) + ")",
                 ErrorCode::refused};

  NodeReading reading;
  auto host = doc->find("host");
  if (host == doc->end()) return bad("host", "missing");
  auto h = read_host(*host);
  if (!h) return h.error();
  reading.host = std::move(*h);

  auto vms = doc->find("vms");
  if (vms == doc->end()) return bad("vms", "missing");
  if (!vms->is_array()) return bad("vms", "not a list");
  reading.vms.reserve(vms->size());
  std::vector<std::size_t> order;  // each VM's index in the document, for messages
  for (std::size_t i = 0; i < vms->size(); ++i) {
    auto vm = read_vm((*vms)[i], "vms[" + std::to_string(i) + "]");
    if (!vm) return vm.error();
    reading.vms.push_back(std::move(*vm));
    order.push_back(i);
  }
  std::sort(order.begin(), order.end(),
            [&](std::size_t a, std::size_t b) { return reading.vms[a].name < reading.vms[b].name; });
  for (std::size_t k = 1; k < order.size(); ++k) {
    const auto& name = reading.vms[order[k]].name;
    if (name == reading.vms[order[k - 1]].name) {
      auto [first, again] = std::minmax(order[k - 1], order[k]);
      return bad("vms[" + std::to_string(again) + "].name",
                 in_quotes(name) + " again (also vms[" + std::to_string(first) + "])");
    }
  }
  std::vector<VmReading> sorted;
  sorted.reserve(order.size());
  for (std::size_t i : order) sorted.push_back(std::move(reading.vms[i]));
  reading.vms = std::move(sorted);
  return reading;
}

namespace {

// ---- running a hook ---------------------------------------------------------

std::string system_error(const std::string& what, int err) { return what + ": " + std::strerror(err); }

Expected<void> check_dir(const std::string& dir) {
  std::string what = "exec hooks directory " + in_quotes(dir);
  if (dir.empty() || dir.front() != '/') return Error{what + ": not an absolute path", ErrorCode::invalid_input};
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Error{system_error(what, errno), ErrorCode::invalid_input};
  if (!S_ISDIR(st.st_mode)) return Error{what + ": not a directory", ErrorCode::invalid_input};
  return check_trusted(what, st);
}

class ExecPlatform final : public NodePlatform {
 public:
  explicit ExecPlatform(ExecOptions options) : o_(std::move(options)) {
    if (o_.hooks_dir.size() > 1 && o_.hooks_dir.back() == '/') o_.hooks_dir.pop_back();
  }

  std::string_view backend() const override { return "exec"; }

  Expected<NodeReading> read() override {
    auto done = run("telemetry", {}, o_.timeout);
    if (!done) return done.error();
    if (done->signal || done->status != 0)
      return Error{"exec hook telemetry: " + ending(*done), ErrorCode::unavailable};
    auto reading = parse_exec_telemetry(done->out);
    if (reading) reading->at = Clock::now();
    return reading;
  }

  Expected<void> attach(const std::string& vm, const LentMemory& lent) override {
    return act("attach", lent_args(vm, lent), o_.timeout);
  }

  Expected<void> detach(const std::string& vm, const LentMemory& lent) override {
    return act("detach", lent_args(vm, lent), o_.timeout);
  }

  Expected<void> migrate(const std::string& vm, const MigrationTarget& target) override {
    Args a;
    a.name("the VM's name", vm).name("the target host", target.host).name("the target's address", target.address, true);
    return act("migrate", std::move(a), o_.migrate_timeout);
  }

  // A vendor without an `incoming` hook migrates with its `migrate` hook
  // alone, which is then given an empty address.
  Expected<std::string> receive(const std::string& vm) override {
    Args a;
    a.name("the VM's name", vm);
    if (a.problem) return Error{"exec hook incoming: " + *a.problem, ErrorCode::invalid_input};
    if (!present("incoming")) return std::string();
    auto done = run("incoming", a.list, o_.timeout);
    if (!done) return done.error();
    if (done->signal || done->status != 0)
      return Error{"exec hook incoming refused: " + ending(*done), ErrorCode::refused};
    std::string address = done->out.substr(0, done->out.find('\n'));
    if (auto why = name_problem(address, true))
      return Error{"exec hook incoming: the address " + in_quotes(address.substr(0, max_name)) + ": " + *why,
                   ErrorCode::refused};
    return address;
  }

  Expected<void> set_balloon(const std::string& vm, std::int64_t mib) override {
    Args a;
    a.name("the VM's name", vm).mib("the balloon's size", mib, false);
    return act("balloon", std::move(a), o_.timeout);
  }

 private:
  // A hook's arguments, checked before it runs: the first problem is kept.
  struct Args {
    std::vector<std::string> list;
    std::optional<std::string> problem;

    Args& name(const char* what, const std::string& value, bool may_be_empty = false) {
      auto why = name_problem(value, may_be_empty);
      if (why && !problem) problem = std::string(what) + " " + in_quotes(value.substr(0, max_name)) + ": " + *why;
      list.push_back(value);
      return *this;
    }
    Args& mib(const char* what, std::int64_t value, bool positive) {
      bool ok = value >= (positive ? 1 : 0) && static_cast<std::uint64_t>(value) <= max_mib;
      if (!ok && !problem) problem = std::string(what) + " " + std::to_string(value) + " MiB: out of range";
      list.push_back(std::to_string(value));
      return *this;
    }
  };

  static Args lent_args(const std::string& vm, const LentMemory& lent) {
    Args a;
    a.name("the VM's name", vm)
        .name("the lease", lent.lease)
        .name("the donor", lent.donor)
        .name("the donor's address", lent.donor_address, true)
        .mib("the lent memory", lent.mib, true);
    return a;
  }

  // How a hook that did not succeed ended, with its reason when it gave one.
  static std::string ending(const ProgramEnd& f) {
    std::string reason = reason_line(f.out);
    std::string how = f.signal ? "killed by signal " + std::to_string(f.signal) + " (" + sigabbrev(f.signal) + ")"
                               : "exit status " + std::to_string(f.status);
    return how + ": " + (reason.empty() ? std::string("it gave no reason") : reason);
  }

  static std::string sigabbrev(int sig) {
    const char* name = ::sigabbrev_np(sig);
    return name ? std::string("SIG") + name : "unknown";
  }

  Expected<void> act(const char* hook, Args args, Millis timeout) {
    if (args.problem) return Error{"exec hook " + std::string(hook) + ": " + *args.problem, ErrorCode::invalid_input};
    auto done = run(hook, args.list, timeout);
    if (!done) return done.error();
    if (done->signal) return Error{"exec hook " + std::string(hook) + ": " + ending(*done), ErrorCode::failed};
    if (done->status != 0)
      return Error{"exec hook " + std::string(hook) + " refused: " + ending(*done), ErrorCode::refused};
    return {};
  }

  std::string path_of(const char* hook) const { return o_.hooks_dir + (o_.hooks_dir == "/" ? "" : "/") + hook; }

  // Whether the vendor wrote this hook at all (an optional one may be absent).
  bool present(const char* hook) const {
    struct stat st {};
    return ::lstat(path_of(hook).c_str(), &st) == 0 || errno != ENOENT;
  }

  // The hook's path, once it is there and safe to run.
  Expected<std::string> locate(const char* hook) const {
    auto dir = check_dir(o_.hooks_dir);
    if (!dir) return dir.error();
    std::string path = path_of(hook);
    std::string what = "exec hook " + std::string(hook) + " (" + in_quotes(path) + ")";
    if (!present(hook)) return Error{what + ": no such hook", ErrorCode::unavailable};
    if (auto safe = check_trusted_program(what, path); !safe) return safe.error();
    return path;
  }

  Expected<ProgramEnd> run(const char* hook, const std::vector<std::string>& args, Millis timeout) {
    auto path = locate(hook);
    if (!path) return path.error();
    std::string name = "exec hook " + std::string(hook);
    ProgramLimits limits;
    limits.timeout = timeout;
    limits.max_output = o_.max_output;
    auto done = run_program(*path, args, limits);
    if (!done) return Error{name + ": " + done.error().message, done.error().code};
    if (done->cut)
      return Error{name + ": printed more than " + std::to_string(o_.max_output) + " bytes: killed, and refused",
                   ErrorCode::refused};
    return done;
  }

  ExecOptions o_;
};

}  // namespace

Expected<std::unique_ptr<NodePlatform>> make_exec(ExecOptions options) {
  auto dir = check_dir(options.hooks_dir);
  if (!dir) return dir.error();
  if (options.timeout.count() <= 0 || options.migrate_timeout.count() <= 0)
    return Error{"exec: a hook's timeout must be positive", ErrorCode::invalid_input};
  if (options.max_output == 0) return Error{"exec: max_output must be positive", ErrorCode::invalid_input};
  return std::unique_ptr<NodePlatform>(std::make_unique<ExecPlatform>(std::move(options)));
}

}  // namespace memlend::platform
