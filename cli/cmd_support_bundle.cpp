// `memlend support-bundle FILE`: one archive for a vendor's support engineer,
// with what a first look at a node needs (its config, the store's state and
// recent events, the service's logs, a metrics scrape, versions, what the
// platform shows) and no key material. A part that cannot be collected is a
// line in the bundle saying why, never the end of the bundle; the archive is
// written to a temporary file beside FILE and renamed, so that FILE is whole
// or absent.
#include "cli/cli.hpp"
#include "cli/config_file.hpp"
#include "cli/inspect.hpp"
#include "cli/metrics_option.hpp"
#include "cli/store_rows.hpp"
#include "cli/support_bundle.hpp"
#include "firmware_hooks/program.hpp"
#include "metrics/http_exposer.hpp"
#include "policy/operator_input.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cctype>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#ifndef MEMLEND_VERSION
#define MEMLEND_VERSION "0.0.0"
#endif

namespace memlend::cli {

namespace {

using namespace std::chrono_literals;

// Bounds: a part past them is cut or refused, and the bundle still made.
constexpr std::size_t most_log_bytes = std::size_t{64} << 20;
constexpr const char* most_log_lines = "200000";
constexpr std::size_t most_events = 100000;
constexpr std::size_t most_metrics_bytes = std::size_t{32} << 20;
constexpr auto tool_timeout = 30s;
constexpr auto version_timeout = 10s;
constexpr auto scrape_timeout = 10s;

// The options of the bundle a config file may set, as `inspect` and `state` take them.
const std::set<std::string> keys_from_config{"db",          "platform", "qmp-dir",  "libvirt-uri",
                                             "hooks-dir",   "hook-timeout", "scenario", "host",
                                             "tls-ca",      "tls-cert", "tls-key"};

struct BundleFlags {
  std::string out;
  std::string config;
  std::shared_ptr<StoreSource> source = std::make_shared<StoreSource>();
  std::string metrics_url;
  std::string since = "1h";
  bool force = false;
  PlatformFlags platform;
  std::string scenario;
  std::string host;
};

// The config file as the bundle reads it: its text, and the values it uses.
struct Config {
  std::string path;        // empty: none
  bool installed = false;  // the package's, found without --config
  std::string text;
  std::map<std::string, std::string> values;  // key → value, of the lines that hold one
  std::vector<std::string> problems;          // lines that do not, and values the bundle's options refuse
};

std::string utc(std::time_t t, const char* format = "%Y-%m-%dT%H:%M:%SZ") {
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

// ---- the temporary file ---------------------------------------------------

// Its path while it exists, so that SIGINT or SIGTERM remove it before memlend dies.
char pending[4096];

void remove_pending_and_die(int sig) {
  if (pending[0]) ::unlink(pending);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

class TempFile {
 public:
  // In FILE's directory, so that the rename is atomic; -1 and errno on failure.
  explicit TempFile(const std::string& out) {
    std::filesystem::path p(out);
    std::string dir = p.parent_path().empty() ? "." : p.parent_path().string();
    path_ = dir + "/." + p.filename().string() + ".XXXXXX";
    if (path_.size() >= sizeof pending) {
      errno = ENAMETOOLONG;
      return;
    }
    std::vector<char> name(path_.begin(), path_.end());
    name.push_back('\0');
    fd_ = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd_ < 0) return;
    path_ = name.data();
    std::memcpy(pending, name.data(), name.size());
    struct sigaction sa {};
    sa.sa_handler = remove_pending_and_die;
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  }
  ~TempFile() {
    pending[0] = '\0';
    if (fd_ < 0) return;
    ::close(fd_);
    if (!kept_) ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }

  // fsync and rename onto `out`; without `replace`, a file that appeared there since is kept.
  Expected<void> keep_as(const std::string& out, bool replace) {
    if (::fsync(fd_) != 0) return Error{out + ": cannot write the bundle (" + std::strerror(errno) + ")"};
    int rc = ::renameat2(AT_FDCWD, path_.c_str(), AT_FDCWD, out.c_str(), replace ? 0 : RENAME_NOREPLACE);
    if (rc != 0 && errno == EEXIST) return Error{out + ": exists; pass --force to replace it"};
    if (rc != 0) return Error{out + ": cannot write the bundle there (" + std::strerror(errno) + ")"};
    kept_ = true;
    return {};
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool kept_ = false;
};

// ---- the config file --------------------------------------------------------

Expected<Config> read_config(CLI::App& cmd, BundleFlags& f) {
  Config c;
  if (cmd.get_option("--config")->count() > 0) {
    c.path = f.config;
  } else if (::access(installed_config, F_OK) == 0) {
    c.path = installed_config;
    c.installed = true;
  }
  if (c.path.empty()) return c;
  auto text = read_input_file(c.path, "config file", max_config_bytes);
  if (!text) return text.error();
  c.text = std::move(*text);
  // The file is run's or the agent's: their keys that take several values may repeat.
  std::vector<const CLI::App*> commands;
  if (const CLI::App* app = cmd.get_parent())
    for (const CLI::App* sub : app->get_subcommands([](const CLI::App*) { return true; })) commands.push_back(sub);
  // Asked before the file sets --db: the command line's own choice wins.
  const bool db_given = cmd.get_option("--db")->count() > 0;
  auto lines = read_config_lines(c.path, repeatable_keys(commands));
  if (!lines) return lines.error();
  for (const ConfigLine& l : *lines) {
    std::string where = c.path + ":" + std::to_string(l.line) + ": ";
    if (!l.problem.empty()) {
      c.problems.push_back(where + l.problem);
      continue;
    }
    c.values[l.key] = l.value;
    if (!keys_from_config.count(l.key)) continue;
    CLI::Option* opt = cmd.get_option("--" + l.key);
    if (opt->count() > 0) continue;  // the command line wins
    if (auto bad = set_from_config_file(*opt, l.value))
      c.problems.push_back(where + "key " + l.key + ": bad value \"" + clip(l.value) + "\": " + *bad);
  }
  if (c.installed && !db_given) f.source->db = installed_db_path(c.values.count("db") ? f.source->db : "");
  // A node of a cluster: its store is the cluster's, unless told otherwise.
  if (!db_given && cmd.get_option("--replica")->count() == 0) {
    auto members = replica_members_in(c.path);
    if (members) f.source->members = std::move(*members);
    else c.problems.push_back(members.error().message);
  }
  return c;
}

// The secrets the config names, for the scrubber: each file read (never into
// the bundle) or why not, by key.
std::vector<std::string> add_secrets(const Config& c, Scrubber& scrubber) {
  std::vector<std::string> notes;
  for (const auto& [key, value] : c.values) {
    if (!names_secret(key)) continue;
    std::string path = value;
    if (!path.empty() && path.front() != '/' && c.installed) path = std::string(installed_state_dir) + "/" + path;
    auto bytes = read_input_file(path, "secret", max_secret_bytes);
    if (!bytes) {
      notes.push_back(key + ": its file was not read, so only PEM blocks are removed for it (" +
                      bytes.error().message + ")");
      continue;
    }
    scrubber.add_secret(*bytes);
    notes.push_back(key + ": its file's bytes are removed wherever they appear");
  }
  return notes;
}

// ---- other programs -----------------------------------------------------------

// An executable of that name on PATH or in the system's directories; "" when none.
std::string find_tool(const std::string& name) {
  std::string dirs = ::getenv("PATH") ? ::getenv("PATH") : "";
  dirs += ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::istringstream in(dirs);
  for (std::string dir; std::getline(in, dir, ':');) {
    if (dir.empty() || dir.front() != '/') continue;
    std::string path = dir + "/" + name;
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0) return path;
  }
  return {};
}

std::string first_line(const std::string& text) {
  std::string line = text.substr(0, text.find('\n'));
  return clip(one_line(line), 200);
}

// What `name args` prints (stdout and stderr), or why there is nothing:
// not found, a status other than those in `ok`, a signal, the deadline.
Expected<platform::ProgramEnd> run_tool(const std::string& path, const std::string& name,
                                        const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                                        std::size_t max_bytes, std::set<int> ok = {0},
                                        const std::string& workdir = "/") {
  if (path.empty()) return Error{name + ": not found on this node"};
  platform::ProgramLimits limits;
  limits.workdir = workdir;
  limits.timeout = timeout;
  limits.max_output = max_bytes;
  limits.with_stderr = true;
  auto end = platform::run_program(path, args, limits);
  if (!end) return Error{name + ": " + end.error().message};
  if (end->cut) return end;
  if (end->signal) return Error{name + ": killed by signal " + std::to_string(end->signal)};
  if (!ok.count(end->status))
    return Error{name + ": exit status " + std::to_string(end->status) + ": " + first_line(end->out)};
  return end;
}

// ---- the parts ----------------------------------------------------------------

BundlePart missing(std::string name, std::string why) {
  BundlePart p;
  p.name = std::move(name);
  p.content = one_line(why);
  return p;
}

BundlePart collected(std::string name, std::string content, std::string detail = {}) {
  BundlePart p;
  p.name = std::move(name);
  p.collected = true;
  p.content = std::move(content);
  p.detail = std::move(detail);
  return p;
}

BundlePart config_part(const Config& c) {
  if (c.path.empty())
    return missing("memlend.conf", std::string("no config file: none given with --config, and ") + installed_config +
                                       " does not exist");
  std::size_t redacted = 0;
  std::string text = redact_config(c.text, &redacted);
  return collected("memlend.conf", std::move(text),
                   "from " + c.path + ", " + std::to_string(redacted) + " value" + (redacted == 1 ? "" : "s") +
                       " of keys naming secrets redacted");
}

BundlePart check_config_part(const Config& c) {
  if (c.path.empty()) return missing("check-config.txt", "no config file to check");
  // This very binary, as the unit runs it before the service starts: in the
  // service's directory for the installed file, else here, where a relative
  // path in the file means what it means to this command.
  std::error_code ec;
  std::string here = std::filesystem::current_path(ec).string();
  std::string path = std::filesystem::absolute(c.path, ec).string();
  auto end = run_tool("/proc/self/exe", "memlend check-config", {"check-config", "--config", path}, tool_timeout,
                      1 << 20, {0, 2}, c.installed ? installed_state_dir : here.empty() ? "/" : here);
  if (!end) return missing("check-config.txt", end.error().message);
  return collected("check-config.txt", end->out, end->status == 0 ? "good" : "problems found");
}

// state.json and events.jsonl, from one read-only look at the store.
std::vector<BundlePart> store_parts(const StoreSource& source, std::time_t since) {
  auto s = open_store_for_reading(source);
  if (!s) return {missing("state.json", s.error().message), missing("events.jsonl", s.error().message)};
  std::vector<BundlePart> parts;
  auto v = read_state_views(**s);
  if (!v) {
    parts.push_back(missing("state.json", v.error().message));
  } else {
    auto j = state_json(source.name(), *v);
    parts.push_back(collected("state.json", j.dump(2) + "\n",
                              std::to_string(j["hosts"].size()) + " hosts, " + std::to_string(j["vms"].size()) +
                                  " VMs, " + std::to_string(j["leases"].size()) + " leases"));
  }
  auto events = (*s)->events_since(static_cast<std::int64_t>(since) * 1000, most_events);
  if (!events) {
    parts.push_back(missing("events.jsonl", events.error().message));
    return parts;
  }
  std::string lines;
  for (auto& e : rows_json(*events)) {
    nlohmann::ordered_json kept;
    for (auto& [key, value] : e.items())
      if (!value.is_null()) kept[key] = value;
    lines += kept.dump() + "\n";
  }
  std::size_t n = events->rows.size();
  parts.push_back(collected("events.jsonl", std::move(lines),
                            std::to_string(n) + " events recorded since " + utc(since) +
                                (n == most_events ? " (the newest " + std::to_string(n) + ")" : "")));
  return parts;
}

BundlePart journal_part(std::time_t since) {
  const std::string name = "journal.txt";
  auto end = run_tool(find_tool("journalctl"), "journalctl",
                      {"--unit=memlend", "--unit=memlend-agent", "--since=@" + std::to_string(since), "--output=short-iso", "--no-pager",
                       std::string("--lines=") + most_log_lines},
                      tool_timeout, most_log_bytes);
  if (!end) return missing(name, end.error().message);
  std::string detail = "journalctl --unit=memlend --unit=memlend-agent since " + utc(since) + ", the newest " + most_log_lines +
                       " lines at most";
  if (end->cut) detail += "; cut at " + std::to_string(most_log_bytes >> 20) + " MiB";
  return collected(name, std::move(end->out), detail);
}

// The page the config's service serves: its metrics key, else what `run
// --config` serves without one (the built-in default, unless it names a scenario).
Expected<std::string> metrics_url(const BundleFlags& f, const Config& c) {
  if (!f.metrics_url.empty()) return f.metrics_url;
  if (c.path.empty()) return Error{"no --metrics-url, and no config file to name the metrics address"};
  auto it = c.values.find("metrics");
  std::string given = it == c.values.end() ? "" : it->second;
  if (given == "off") return Error{c.path + ": metrics = off: the service serves none"};
  auto wanted = metrics_request(given, c.values.count("scenario") ? "" : metrics::default_address);
  if (!wanted) return Error{c.path + ": key metrics: " + wanted.error().message.substr(std::strlen("--metrics: "))};
  if (wanted->address.empty())
    return Error{c.path + ": names a scenario and no metrics address, so the service serves none; give --metrics-url"};
  auto a = metrics::parse_listen_address(wanted->address);
  if (!a) return Error{c.path + ": key metrics: " + a.error().message};
  if (a->port == 0) return Error{c.path + ": key metrics: port 0 is picked at start; give --metrics-url"};
  return "http://" + (a->host == "0.0.0.0" ? std::string("127.0.0.1") : a->host) + ":" + std::to_string(a->port) +
         "/metrics";
}

BundlePart metrics_part(const BundleFlags& f, const Config& c) {
  auto url = metrics_url(f, c);
  if (!url) return missing("metrics.txt", url.error().message);
  auto page = http_get_text(*url, scrape_timeout, most_metrics_bytes);
  if (!page) return missing("metrics.txt", page.error().message);
  return collected("metrics.txt", std::move(*page), "scraped from " + *url);
}

BundlePart versions_part() {
  std::string text = "memlend " MEMLEND_VERSION "\n";
  struct utsname u {};
  std::string machine;
  if (::uname(&u) == 0) {
    machine = u.machine;
    text += std::string("kernel: ") + u.sysname + " " + u.release + " " + u.version + " " + u.machine + "\n";
  }
  if (auto os = read_input_file("/etc/os-release", "os-release", 1 << 16)) {
    std::istringstream in(*os);
    for (std::string line; std::getline(in, line);)
      if (line.rfind("PRETTY_NAME=", 0) == 0) {
        std::string name = line.substr(12);
        if (name.size() >= 2 && name.front() == '"' && name.back() == '"') name = name.substr(1, name.size() - 2);
        text += "os: " + one_line(name) + "\n";
      }
  }
  auto version_of = [&](const std::string& label, const std::vector<std::string>& names) {
    for (const auto& name : names) {
      std::string path = find_tool(name);
      if (path.empty()) continue;
      auto end = run_tool(path, name, {"--version"}, version_timeout, 1 << 16);
      text += label + ": " + (end ? first_line(end->out) : end.error().message) + "\n";
      return;
    }
    text += label + ": not found (" + names.front() + ")\n";
  };
  version_of("qemu", {"qemu-system-" + machine, "kvm"});
  version_of("libvirt", {"libvirtd", "virsh"});
  text += "libraries:\n" + bundle_library_versions();
  return collected("versions.txt", std::move(text));
}

BundlePart inspect_part(const BundleFlags& f, const Config& c) {
  if (f.platform.platform.empty())
    return missing("inspect.json", "no platform configured: give --platform, or set platform in the config file" +
                                       (c.path.empty() ? std::string() : " (" + c.path + ")"));
  auto in = inspect_node(f.platform, f.scenario, f.host, 1);
  if (!in) return missing("inspect.json", in.error().message);
  return collected("inspect.json", inspection_json(*in).dump(2) + "\n",
                   in->backend + ", " + std::to_string(in->reading.vms.size()) + " VMs");
}

std::string manifest(const BundleFlags& f, const Config& c, const std::string& node, std::time_t now, std::time_t since,
                     const std::vector<std::string>& secret_notes, std::size_t scrubbed,
                     const std::vector<BundlePart>& parts) {
  std::ostringstream m;
  m << "memlend support bundle\n"
    << "made:      " << utc(now) << " by memlend " MEMLEND_VERSION " on " << node << "\n"
    << "window:    events and logs since " << utc(since) << " (--since " << f.since << ")\n"
    << "config:    " << (c.path.empty() ? "none" : c.path + (c.installed ? " (the installed one)" : "")) << "\n"
    << "store:     " << f.source->name() << "\n"
    << "platform:  " << (f.platform.platform.empty() ? "none" : f.platform.platform) << "\n"
    << "scrubbed:  " << scrubbed << " places of key material removed (PEM blocks and secrets' bytes)\n";
  for (const auto& n : secret_notes) m << "secret:    " << n << "\n";
  for (const auto& p : c.problems) m << "config problem: " << one_line(p) << "\n";
  m << "\n";
  for (const auto& p : parts) {
    m << (p.collected ? p.name : p.name + ".missing") << ": "
      << (p.collected ? "collected" + (p.detail.empty() ? "" : ", " + p.detail) : "not collected: " + p.content)
      << "\n";
  }
  return m.str();
}

int make_bundle(CLI::App& cmd, BundleFlags& f) {
  auto since_s = parse_duration(f.since);
  if (!since_s || *since_s <= 0) return bad_input("--since: '" + clip(f.since) + "' is not a duration such as 1h or 90m");
  if (!f.metrics_url.empty() && f.metrics_url.rfind("http://", 0) != 0 && f.metrics_url.rfind("https://", 0) != 0)
    return bad_input("--metrics-url: '" + clip(f.metrics_url) + "' is not an http:// or https:// URL");
  struct stat st {};
  if (::lstat(f.out.c_str(), &st) == 0) {
    if (!f.force) return bad_input(f.out + ": exists; pass --force to replace it");
    if (!S_ISREG(st.st_mode)) return bad_input(f.out + ": is not a regular file; it is not replaced");
  }
  auto config = read_config(cmd, f);
  if (!config) return bad_input(config.error().message);
  TempFile temp(f.out);
  if (temp.fd() < 0) return bad_input(f.out + ": cannot write the bundle there (" + std::strerror(errno) + ")");

  const std::time_t now = std::time(nullptr);
  const std::time_t since = now - static_cast<std::time_t>(*since_s);
  std::vector<BundlePart> parts;
  parts.push_back(config_part(*config));
  parts.push_back(check_config_part(*config));
  for (auto& p : store_parts(*f.source, since)) parts.push_back(std::move(p));
  parts.push_back(journal_part(since));
  parts.push_back(metrics_part(f, *config));
  parts.push_back(versions_part());
  parts.push_back(inspect_part(f, *config));

  // Defence in depth: nothing above reads a key into a part, and every part
  // is scrubbed of key material all the same.
  Scrubber scrubber;
  auto secret_notes = add_secrets(*config, scrubber);
  std::size_t scrubbed = 0;
  for (auto& p : parts) p.content = scrubber.scrub(std::move(p.content), &scrubbed);
  std::string node = "unknown";
  if (struct utsname u {}; ::uname(&u) == 0) {
    node.clear();
    for (char ch : std::string(u.nodename))
      node += std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '.' ? ch : '_';
  }
  std::string m = scrubber.scrub(manifest(f, *config, node, now, since, secret_notes, scrubbed, parts));
  parts.insert(parts.begin(), collected("MANIFEST", std::move(m)));
  std::string top = "memlend-support-" + node + "-" + utc(now, "%Y%m%dT%H%M%SZ");
  if (auto written = write_bundle(temp.fd(), top, parts); !written)
    return bad_input(f.out + ": cannot write the bundle (" + written.error().message + ")");
  if (auto kept = temp.keep_as(f.out, f.force); !kept) return bad_input(kept.error().message);
  std::size_t got = 0;
  for (const auto& p : parts) got += p.collected ? 1 : 0;
  std::cout << f.out << ": " << got - 1 << " of " << parts.size() - 1
            << " parts collected; its MANIFEST says what each holds, or why it is missing\n";
  return exit_ok;
}

}  // namespace

Action add_support_bundle(CLI::App& app) {
  auto f = std::make_shared<BundleFlags>();
  auto* cmd = app.add_subcommand(
      "support-bundle",
      "Write one archive (.tar.gz) for a support engineer: the config file with the values of keys that name\n"
      "secrets redacted, the store's state and its events of the last hour, the service's journal of the last\n"
      "hour, a metrics scrape, versions, and what the platform shows. Key material is never read into it, and\n"
      "every part is scrubbed of PEM blocks and of the bytes of the secret files the config names.\n"
      "A part that cannot be collected is a line saying why; the bundle is still written.");
  cmd->add_option("FILE", f->out, "The archive to write (mode 0600); refused if it exists, unless --force")
      ->type_name("FILE")
      ->required();
  cmd->add_option("--config", f->config,
                  "The node's config file: its store, metrics address, platform and secret files (default " +
                      std::string(installed_config) + " when it exists)")
      ->type_name("FILE");
  add_store_options(*cmd, f->source);
  cmd->add_option("--metrics-url", f->metrics_url,
                  "The metrics page to scrape (default: http://ADDR/metrics for the config's metrics address)")
      ->type_name("URL");
  cmd->add_option("--since", f->since, "How far back events and logs go, e.g. 1h, 90m, 2d")
      ->type_name("DURATION")
      ->capture_default_str();
  cmd->add_flag("--force", f->force, "Replace FILE if it exists");
  add_platform_flags(*cmd, f->platform);
  cmd->add_option("--scenario", f->scenario, "sim: the scenario whose host to inspect")->type_name("FILE");
  cmd->add_option("--host", f->host, "sim: the NAME of that host")->type_name("NAME");
  return [cmd, f] { return make_bundle(*cmd, *f); };
}

}  // namespace memlend::cli
