#include "core/health.hpp"
#include "core/log.hpp"
#include "core/stop_signals.hpp"
#include "node/controller.hpp"
#include "journal/journal.hpp"
#include "node/leadership.hpp"
#include "node/recovery.hpp"
#include "persistence/store.hpp"
#include "replica/tls.hpp"
#include "cli/cli.hpp"
#include "cli/guest_flags.hpp"
#include "cli/cluster_flags.hpp"
#include "cli/config_file.hpp"
#include "cli/logging.hpp"
#include "cli/metrics_option.hpp"
#include "demo/demo_scenario.hpp"
#include "scenario/scenario.hpp"

#include <filesystem>
#include <iostream>
#include <sstream>
#include <cerrno>
#include <cstring>
#include <sys/stat.h>
#include <unistd.h>

namespace memlend::cli {

namespace {

struct RunFlags {
  std::string scenario;
  std::string for_text;
  double speed = 0;  // 0: the default for the scenario kind
  std::string events_out;
  std::string datastore;
  bool dry_run = false;
  bool quiet = false;
  bool show_scenario = false;
  std::string listen;
  ClusterFlags cluster;
  std::string data_path = "on";
  std::uint64_t data_kib_per_gib = 1024;
  GuestFlags guests;
  std::string metrics;
  LogFlags log;
  std::string db = store::default_db_path;
  bool no_db = false;
  std::uint32_t events_keep_days = 30;
  std::uint64_t events_keep_rows = 1000000;
  // The replicated store: this node's member of its dqlite cluster.
  std::uint64_t replica_id = 0;
  std::string replica_address;
  std::string replica_join;
  std::string replica_dir;
  std::uint32_t replica_latency_ms = 0;
};

// A century of days, and as many rows as a year of a busy cluster's events
// many times over: past these a limit is a typo.
// What an open cluster's store is fingerprinted by (and --show-scenario
// prints): it has no scenario, and a store of a scenario is another cluster's.
constexpr std::string_view open_cluster_text =
    "an open cluster: no scenario; the hosts are those whose agents join, with what their platforms say\n";

constexpr std::uint32_t most_keep_days = 36500;
constexpr std::uint64_t most_keep_rows = 1000000000;

std::optional<std::string> empty_events_file(const std::string& path) {
  auto fd = open_events_file(path, EventsFile::empty);
  if (!fd) return fd.error().message;
  ::close(*fd);
  return std::nullopt;
}

// The built-in demo runs a hundred times faster than the wall clock, so its
// half hour of scenario time passes in under twenty seconds.
constexpr double demo_speed = 100;

// A datastore directory run could make, touching nothing: the path is one,
// or its nearest existing ancestor is a directory.
std::optional<std::string> could_make_directory(const std::filesystem::path& dir) {
  std::error_code ec;
  for (auto p = dir; !p.empty(); p = p.parent_path()) {
    auto st = std::filesystem::status(p, ec);
    if (std::filesystem::exists(st)) {
      if (std::filesystem::is_directory(st)) return std::nullopt;
      return p.string() + " is not a directory";
    }
    if (p == p.parent_path()) break;
  }
  return std::nullopt;  // relative, and nothing of it exists yet: made in the working directory
}

// An events file open_events_file would take, touching nothing; its words.
std::optional<std::string> could_open_events_file(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) return path + ": is a symbolic link; name the file itself";
    if (!S_ISREG(st.st_mode)) return path + ": not a regular file; the event log is written to one";
    if (::access(path.c_str(), W_OK) != 0) return path + ": cannot write (" + std::strerror(errno) + ")";
    return std::nullopt;
  }
  auto parent = std::filesystem::path(path).parent_path();
  if (parent.empty()) parent = ".";
  if (::access(parent.c_str(), W_OK) != 0) return path + ": cannot write (" + std::strerror(errno) + ")";
  return std::nullopt;
}

// What run makes of its options before it starts anything but the store.
struct RunCheck {
  std::string text;  // the scenario, read once: the text parsed is the text fingerprinted for the store
  std::string origin;
  std::optional<policy::Scenario> scenario;
  RunOptions options;
  std::optional<MemberOptions> member;  // the replicated store's member on this node
  std::vector<RunProblem> problems;
};

// Run's checks of its options, in the order it makes them. `start`: as run
// starts, the first problem ends them, and the datastore is made and the
// events file opened; else (check-config) they go on wherever a later check
// does not rest on an earlier one, and touch nothing.
RunCheck check_run(RunFlags& f, bool speed_given, bool start) {
  RunCheck c;
  RunOptions& o = c.options;
  // True when the checks end here.
  auto problem = [&](const std::string& key, const std::string& message) {
    c.problems.push_back({key, message});
    return start;
  };
  c.origin = f.scenario;
  bool have_text = true;
  // Cluster mode with no scenario is a real cluster: its hosts are those
  // whose agents join, with the facts each reads from its own platform, and
  // the store keeps them across restarts.
  bool open_cluster = f.scenario.empty() && !f.listen.empty();
  if (open_cluster) {
    c.text = std::string(open_cluster_text);
    c.origin = "an open cluster";
    have_text = false;
    c.scenario = policy::Scenario{};
  } else if (f.scenario.empty()) {
    c.text = std::string(demo::builtin_demo_scenario());
    c.origin = "built-in demo";
  } else {
    auto read = platform::read_scenario_file(f.scenario);
    if (!read && problem("scenario", read.error().message)) return c;
    have_text = static_cast<bool>(read);
    if (read) c.text = std::move(*read);
  }
  if (start && f.show_scenario) return c;
  if (have_text) {
    auto sc = platform::parse_scenario(c.text, c.origin);
    if (!sc && problem("scenario", sc.error().message)) return c;
    if (sc) c.scenario = std::move(*sc);
    // A scenario of no hosts gives an open cluster its settings.
    if (c.scenario && c.scenario->hosts.empty()) {
      if (f.listen.empty() &&
          problem("scenario", c.origin + ": lists no hosts: that is an open cluster, whose hosts join as agents, "
                                         "and it needs --listen"))
        return c;
      open_cluster = true;
    }
  }
  const auto& sc = c.scenario;
  if (speed_given && !(f.speed > 0 && f.speed <= 1e6) &&
      problem("speed", "--speed: must be more than 0 and at most 1000000"))
    return c;
  o.speed = speed_given ? f.speed : (f.scenario.empty() && !open_cluster ? demo_speed : 1.0);
  o.network.open = open_cluster;
  if (!f.for_text.empty()) {
    auto d = parse_duration(f.for_text);
    if (!d && problem("for", "--for: \"" + f.for_text + "\" is not a duration (examples: 1200, 1200s, 20m, 1h)"))
      return c;
    o.until_s = d;
  } else if (sc && !open_cluster) {
    auto platform_end = platform::make_sim(*sc)->last_change_s();
    o.until_s = platform_end + static_cast<double>(sc->settings.migrate_after_s) + 60;
  }
  auto wanted = metrics_request(f.metrics, f.scenario.empty() ? metrics::default_address : "");
  if (!wanted && problem("metrics", wanted.error().message)) return c;
  if (wanted && !wanted->address.empty()) {
    o.metrics.registry = std::make_shared<metrics::Registry>(MEMLEND_VERSION);
    o.health = std::make_shared<Health>();
    o.metrics.serve = [r = o.metrics.registry, w = *wanted, h = o.health] {
      return serve_metrics(*r, w, [h] { return h->not_ready(Health::Clock::now()); });
    };
  }
  o.datastore = f.datastore.empty() ? "memlend-datastore" : f.datastore;
  if (start) {
    std::error_code ec;
    std::filesystem::create_directories(o.datastore, ec);
    if (ec || !std::filesystem::is_directory(o.datastore))
      if (problem("datastore", "--datastore: " + o.datastore + ": cannot make the directory" +
                                   (ec ? " (" + ec.message() + ")" : std::string())))
        return c;
  } else if (auto why = could_make_directory(o.datastore)) {
    problem("datastore", "--datastore: " + o.datastore + ": cannot make the directory (" + *why + ")");
  }
  if (!f.events_out.empty()) {
    if (start) {
      // Kept as it is: a resumed run adds to the log it left; a fresh one empties it later.
      auto fd = open_events_file(f.events_out, EventsFile::keep);
      if (!fd && problem("events-out", "--events-out: " + fd.error().message)) return c;
      if (fd) ::close(*fd);
    } else if (auto why = could_open_events_file(f.events_out)) {
      problem("events-out", "--events-out: " + *why);
    }
    o.sink.events_out = f.events_out;
  }
  if (f.events_keep_days > most_keep_days &&
      problem("events-keep-days", "--events-keep-days: must be from 0 to " + std::to_string(most_keep_days)))
    return c;
  if (f.events_keep_rows > most_keep_rows &&
      problem("events-keep-rows", "--events-keep-rows: must be from 0 to " + std::to_string(most_keep_rows)))
    return c;
  if (f.data_path != "on" && f.data_path != "off" &&
      problem("data-path", "--data-path: \"" + f.data_path + "\" is neither on nor off"))
    return c;
  if ((f.data_kib_per_gib < 4 || f.data_kib_per_gib > 1024 * 1024) &&
      problem("data-kib-per-gib", "--data-kib-per-gib: must be between 4 and 1048576"))
    return c;
  if (sc) {
    auto guests = guest_options(f.guests, f.data_kib_per_gib, f.data_path == "on" && !f.dry_run, &*sc);
    if (!guests && problem("qemu-vm", guests.error().message)) return c;
    if (guests) o.data.guests = *guests;
  }
  o.data.enabled = f.data_path == "on" && !f.dry_run;
  o.data.bytes_per_mib = f.data_kib_per_gib;  // KiB per GiB is bytes per MiB
  o.sink.console = !f.quiet;
  o.dry_run = f.dry_run;
  if (sc) {
    o.scenario = *sc;
    o.start = fresh_start(*sc, 0);
  }
  if (!f.listen.empty()) {
    auto addr = parse_address(f.listen);
    if (!addr && problem("listen", "--listen: \"" + f.listen + "\" is not HOST:PORT")) return c;
    if (auto bad = check_tls(f.cluster)) {
      // Its message names the flag; the key is the flag without its dashes.
      auto key = bad->substr(2, bad->find(':') - 2);
      if (problem(key, *bad)) return c;
    }
    if (!start && f.cluster.secret_file.empty())
      problem("cluster-secret-file", "--cluster-secret-file: required with --listen");
    auto secret = read_secret(f.cluster.secret_file);
    if (!secret && (start || !f.cluster.secret_file.empty()) && problem("cluster-secret-file", secret.error().message)) return c;
    auto ca = ClusterCa::load(f.cluster.ca);
    if (!ca && !f.cluster.ca.empty() && problem("tls-ca", ca.error().message)) return c;
    if (addr && secret && ca) {
      o.network.ca = *ca;
      o.network.enabled = true;
      o.network.listen_host = addr->first;
      o.network.listen_port = addr->second;
      o.network.cluster = f.cluster.cluster;
      o.network.secret = *secret;
      o.network.tls = {f.cluster.cert, f.cluster.key, f.cluster.ca};
    }
  }
  if (f.replica_id != 0 || !f.replica_address.empty() || !f.replica_join.empty() || !f.replica_dir.empty()) {
    auto flag_problem = [&](const std::string& key, const std::string& message) { return problem(key, message); };
    if (f.replica_id == 0 &&
        flag_problem("replica-id", "--replica-id: required with the other --replica-* options, from 1"))
      return c;
    if (f.listen.empty() &&
        flag_problem("replica-id", "--replica-id: a replicated store is for a cluster: needs --listen"))
      return c;
    if ((f.no_db || f.dry_run) &&
        flag_problem("replica-id", "--replica-id: a replicated store records; not with --no-db or --dry-run"))
      return c;
    if (!parse_address(f.replica_address) &&
        flag_problem("replica-address", "--replica-address: \"" + f.replica_address + "\" is not HOST:PORT"))
      return c;
    if (f.replica_dir.empty() && flag_problem("replica-dir", "--replica-dir: required with --replica-id"))
      return c;
    MemberOptions m;
    // The store's traffic goes over the TLS the agents' does: the same CA
    // and this node's certificate (check_tls above has named a missing file).
    if (auto bad = check_tls(f.cluster); !bad) {
      auto tls = replica::Tls::load(f.cluster.ca, f.cluster.cert, f.cluster.key);
      if (!tls) {
        // Its message names the flag of the file that is wrong; the key is the flag without its dashes.
        const std::string& said = tls.error().message;
        auto key = said.rfind("--", 0) == 0 ? said.substr(2, said.find(' ') - 2) : std::string("tls-cert");
        if (flag_problem(key, tls.error().message)) return c;
      } else {
        m.tls = *tls;
      }
    }
    m.id = f.replica_id;
    m.address = f.replica_address;
    m.data_dir = f.replica_dir;
    if (f.replica_latency_ms > 0) m.network_latency = std::chrono::milliseconds(f.replica_latency_ms);
    std::stringstream list(f.replica_join);
    for (std::string item; std::getline(list, item, ',');) {
      if (!parse_address(item) &&
          flag_problem("replica-join", "--replica-join: \"" + item + "\" is not HOST:PORT"))
        return c;
      m.join.push_back(item);
    }
    if (m.id != 1 && m.join.empty() &&
        flag_problem("replica-join", "--replica-join: member " + std::to_string(m.id) +
                                         " joins through members already there (member 1 starts the cluster)"))
      return c;
    c.member = m;
  }
  return c;
}

}  // namespace

RunCommand make_run(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "run",
      "Run the controller on the simulated cluster of a scenario file (or the\n"
      "built-in demo: the patent's FIG. 2 and FIG. 3 clusters, a VM whose demand\n"
      "grows, a donor that fails), printing what it detects and does as it goes.");
  auto f = std::make_shared<RunFlags>();
  cmd->add_option("--scenario", f->scenario,
                  "Scenario file (JSON, a regular file of at most 64 MiB); without it, the\n"
                  "built-in demo, or with --listen an open cluster: the hosts are those whose\n"
                  "agents join, each with what its platform says of it")
      ->type_name("FILE");
  cmd->add_option("--for", f->for_text,
                  "Stop when the scenario clock reaches this (90, 90s, 20m, 1h); by default\n"
                  "when the last event is past by migrate_after_s + 60 s (an open cluster runs until\n"
                  "stopped)");
  auto* speed = cmd->add_option("--speed", f->speed,
                  "Run the scenario clock X times faster than the wall clock\n"
                  "(default 1 for a scenario file, 100 for the built-in demo)");
  cmd->add_option("--events-out", f->events_out,
                  "Write the event log here, one JSON object per line (a fresh run replaces\n"
                  "the file; a run resumed from --db brings it up to the store and appends);\n"
                  "a regular file, never reached through a symbolic link")
      ->type_name("FILE");
  cmd->add_option("--datastore", f->datastore,
                  "Directory of the shared datastore, for mirror files (default: ./memlend-datastore,\n"
                  "made if missing)")
      ->type_name("DIR");
  cmd->add_flag("--dry-run", f->dry_run, "Decide and explain, but lend, move and mirror nothing (and record nothing)");
  cmd->add_option("--db", f->db,
                  "The store: every transition is recorded here before it is carried out, and a\n"
                  "restarted run resumes from it (default: memlend.db in the working directory)")
      ->type_name("FILE");
  cmd->add_flag("--no-db", f->no_db, "Keep nothing: no store, no resuming");
  cmd->add_option("--events-keep-days", f->events_keep_days,
                  "Drop the store's events older than DAYS, oldest first (default 30; 0: no age limit)");
  cmd->add_option("--events-keep-rows", f->events_keep_rows,
                  "Keep at most N events in the store, dropping the oldest (default 1000000; 0: no limit)");
  cmd->add_option("--data-path", f->data_path,
                  "on: every simulated host serves its memory over TCP on loopback, leases are\n"
                  "really mapped (userfaultfd) and a guest workload writes and checks them;\n"
                  "off: the data path is only simulated (default on)")
      ->type_name("{on,off}");
  auto* scale = cmd->add_option("--data-kib-per-gib", f->data_kib_per_gib,
                  "Real memory moved per GiB lent, in KiB (default 1024: 48 GiB lent is 48 MiB)");
  add_guest_flags(cmd, f->guests, scale);
  cmd->add_flag("--quiet", f->quiet, "Print nothing as it goes (the event log is still written)");
  cmd->add_flag("--show-scenario", f->show_scenario, "Print the scenario that would run, and exit");
  cmd->add_option("--listen", f->listen,
                  "Cluster mode: agents on the hosts join here (HOST:PORT, over TLS) and report\n"
                  "their hosts; needs --cluster, --cluster-secret-file and the --tls-* files");
  add_cluster_flags(cmd, f->cluster);
  cmd->add_option("--replica-id", f->replica_id,
                  "Keep the store in a dqlite cluster, of which this node is member N (1 starts\n"
                  "the cluster; never reuse an id): the controller runs on whichever member\n"
                  "leads, and moves when it dies; a single-node store at --db is imported into\n"
                  "it when no controller has written to it yet, and renamed FILE.imported")
      ->type_name("N");
  cmd->add_option("--replica-address", f->replica_address,
                  "Where this member listens for the other members and for memlend (HOST:PORT)");
  cmd->add_option("--replica-join", f->replica_join,
                  "Members already in the cluster to join through (HOST:PORT[,HOST:PORT...])");
  cmd->add_option("--replica-dir", f->replica_dir, "This member's Raft log and snapshots")->type_name("DIR");
  cmd->add_option("--replica-latency-ms", f->replica_latency_ms,
                  "The network round trip the cluster plans for: Raft's election timeout is 15\n"
                  "times it (default: dqlite's, 3 s elections)")
      ->type_name("MS")
      ->check(CLI::Range(1u, 10000u));
  // A demo is for looking at, Grafana included; a scenario run is often a test
  // beside others, which must not fight over one port.
  add_metrics_option(cmd, f->metrics,
                     "the built-in demo serves " + std::string(metrics::default_address) +
                         " (and runs without metrics if that is taken); a scenario file, nothing");
  add_log_flags(cmd, f->log, "info");
  auto check = [f, speed](bool start) { return check_run(*f, speed->count() > 0, start); };
  return {with_config_file(cmd, [f, check] {
    setup_logging(f->log);
    RunCheck c = check(true);
    if (!c.problems.empty()) return bad_input(c.problems.front().message);
    if (f->show_scenario) {
      std::cout << c.text;
      return exit_ok;
    }
    RunOptions& o = c.options;
    const std::string& text = c.text;
    const std::string& origin = c.origin;
    const policy::Scenario* sc = &*c.scenario;
    o.platform = platform::make_sim(*sc);
    // The metrics server's threads inherit this thread's mask: made before
    // the stop signals were blocked, one of them could take a SIGTERM and die
    // of it, taking the process with it, instead of the controller stopping in order.
    StopSignalsBlocked blocked;
    // Before the store is opened: a metrics address that is taken is bad input,
    // and bad input leaves no store behind.
    auto exposer = start_metrics_server(o.metrics);
    if (!exposer) return bad_input(exposer.error().message);
    o.metrics.serve = nullptr;
    // A single-node store at --db is offered for import until a term has
    // opened the replicated store: imported then, or told that it was not.
    bool offer_db = true;
    // Once, or on a replicated store each time this node leads.
    auto run_once = [&](std::function<bool()> still_leading, std::optional<store::Replica> replica) -> int {
      std::vector<std::string> resume_notes;
      if (!f->no_db && !f->dry_run) {
        ResumeOptions ro;
        ro.db = f->db;
        ro.replica = replica;
        ro.import_db = offer_db;
        ro.scenario_text = text;
        ro.until_s = o.until_s;
        ro.data_path_in_process = !o.network.enabled;
        ro.datastore = o.datastore;
        ro.events_keep_days = f->events_keep_days;
        ro.events_keep_rows = f->events_keep_rows;
        if (o.metrics.registry)
          ro.on_commit = [h = o.metrics.registry->store_commit_duration()](double s) { h.observe(s); };
        auto resumed = open_run(*sc, ro);
        // The leadership may have gone while the store opened.
        if (!resumed && still_leading && !still_leading()) return lost_leadership;
        if (!resumed) return bad_input(resumed.error().message);
        offer_db = false;
        if (o.health) o.health->set_store(Health::Store::open);
        o.store = resumed->store;
        o.scenario = resumed->scenario;
        o.start = resumed->start;
        o.origin_s = resumed->origin_s;
        o.platform = resumed->platform;
        o.fingerprint = resumed->fingerprint;
        resume_notes = resumed->notes;
        if (!resumed->resumed && !f->events_out.empty())
          if (auto err = empty_events_file(f->events_out)) return bad_input("--events-out: " + *err);
        if (resumed->resumed && !f->events_out.empty())
          if (auto err = catch_up_events_file(f->events_out, *resumed->store))
            return bad_input("--events-out: " + *err);
      } else {
        if (o.health) o.health->set_store(Health::Store::none);
        if (!f->events_out.empty())
          if (auto err = empty_events_file(f->events_out)) return bad_input("--events-out: " + *err);
      }
      if (!f->quiet) {
        for (const auto& n : resume_notes) log::console("memlend: ", n);
        std::ostringstream running;
        if (o.network.open)
          running << "running " << origin << ": hosts join as their agents do"
                  << (o.until_s ? " until t=" + std::to_string(static_cast<long>(*o.until_s)) + "s" : "")
                  << (o.dry_run ? " (dry run)" : "");
        else
          running << "running " << origin << " on the simulated platform at " << o.speed << "x until t="
                  << *o.until_s << "s" << (o.dry_run ? " (dry run)" : "");
        log::console("memlend: ", running.str());
        if (o.data.enabled && !o.network.enabled)
          log::console("memlend: ", "data path: each simulated host serves its memory on loopback over TCP, " +
                                        std::to_string(f->data_kib_per_gib) +
                                        " KiB for every GiB lent; a guest workload writes and checks it");
      }
      o.still_leading = still_leading;
      int status = run_controller(o);
      o.store.reset();  // a store whose leader is gone writes nothing more
      return status;
    };
    if (!c.member) return run_once(nullptr, std::nullopt);
    auto member = Member::start(*c.member);
    if (!member && member.error().code == ErrorCode::unavailable) return exit_ok;  // stopped while joining
    if (!member) return bad_input("--replica-id: " + member.error().message);
    return follow_leadership(**member, [&](std::function<bool()> still_leading) {
      // A store that lost its connection to the leader records nothing more,
      // though this member may still lead: the term ends, and the next opens
      // the store afresh.
      auto leads_and_records = [&o, still_leading] { return still_leading() && (!o.store || o.store->recording()); };
      return run_once(leads_and_records, (*member)->store());
    });
  }), [check] { return check(false).problems; }};
}

Action add_run(CLI::App& app) { return make_run(app).action; }

}  // namespace memlend::cli
