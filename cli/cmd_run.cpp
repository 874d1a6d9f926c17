#include "core/stop_signals.hpp"
#include "node/controller.hpp"
#include "journal/journal.hpp"
#include "node/recovery.hpp"
#include "persistence/store.hpp"
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
  std::string log_level;
  std::string db = store::default_db_path;
  bool no_db = false;
  std::uint32_t events_keep_days = 30;
  std::uint64_t events_keep_rows = 1000000;
};

// A century of days, and as many rows as a year of a busy cluster's events
// many times over: past these a limit is a typo.
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

}  // namespace

Action add_run(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "run",
      "Run the controller on the simulated cluster of a scenario file (or the\n"
      "built-in demo: the patent's FIG. 2 and FIG. 3 clusters, a VM whose demand\n"
      "grows, a donor that fails), printing what it detects and does as it goes.");
  auto f = std::make_shared<RunFlags>();
  cmd->add_option("--scenario", f->scenario,
                  "Scenario file (JSON, a regular file of at most 64 MiB); without it, the\n"
                  "built-in demo");
  cmd->add_option("--for", f->for_text,
                  "Stop when the scenario clock reaches this (90, 90s, 20m, 1h); by default\n"
                  "when the last event is past by migrate_after_s + 60 s");
  auto* speed = cmd->add_option("--speed", f->speed,
                  "Run the scenario clock X times faster than the wall clock\n"
                  "(default 1 for a scenario file, 100 for the built-in demo)");
  cmd->add_option("--events-out", f->events_out,
                  "Write the event log here, one JSON object per line (a fresh run replaces\n"
                  "the file; a run resumed from --db brings it up to the store and appends);\n"
                  "a regular file, never reached through a symbolic link");
  cmd->add_option("--datastore", f->datastore,
                  "Directory of the shared datastore, for mirror files (default: ./memlend-datastore,\n"
                  "made if missing)");
  cmd->add_flag("--dry-run", f->dry_run, "Decide and explain, but lend, move and mirror nothing (and record nothing)");
  cmd->add_option("--db", f->db,
                  "The store: every transition is recorded here before it is carried out, and a\n"
                  "restarted run resumes from it (default: memlend.db in the working directory)");
  cmd->add_flag("--no-db", f->no_db, "Keep nothing: no store, no resuming");
  cmd->add_option("--events-keep-days", f->events_keep_days,
                  "Drop the store's events older than DAYS, oldest first (default 30; 0: no age limit)");
  cmd->add_option("--events-keep-rows", f->events_keep_rows,
                  "Keep at most N events in the store, dropping the oldest (default 1000000; 0: no limit)");
  cmd->add_option("--data-path", f->data_path,
                  "on: every simulated host serves its memory over TCP on loopback, leases are\n"
                  "really mapped (userfaultfd) and a guest workload writes and checks them;\n"
                  "off: the data path is only simulated (default on)");
  auto* scale = cmd->add_option("--data-kib-per-gib", f->data_kib_per_gib,
                  "Real memory moved per GiB lent, in KiB (default 1024: 48 GiB lent is 48 MiB)");
  add_guest_flags(cmd, f->guests, scale);
  cmd->add_flag("--quiet", f->quiet, "Print nothing as it goes (the event log is still written)");
  cmd->add_flag("--show-scenario", f->show_scenario, "Print the scenario that would run, and exit");
  cmd->add_option("--listen", f->listen,
                  "Cluster mode: agents on the hosts join here (HOST:PORT, over TLS) and report\n"
                  "their hosts; needs --cluster, --cluster-secret-file and the --tls-* files");
  add_cluster_flags(cmd, f->cluster);
  // A demo is for looking at, Grafana included; a scenario run is often a test
  // beside others, which must not fight over one port.
  add_metrics_option(cmd, f->metrics,
                     "the built-in demo serves " + std::string(metrics::default_address) +
                         " (and runs without metrics if that is taken); a scenario file, nothing");
  add_log_level(cmd, f->log_level, "info");
  return with_config_file(cmd, [f, speed] {
    setup_logging(f->log_level);
    // Read once: the text parsed is the text fingerprinted for the store.
    std::string text;
    std::string origin = f->scenario;
    if (f->scenario.empty()) {
      text = std::string(demo::builtin_demo_scenario());
      origin = "built-in demo";
    } else {
      auto read = platform::read_scenario_file(f->scenario);
      if (!read) return bad_input(read.error().message);
      text = std::move(*read);
    }
    if (f->show_scenario) {
      std::cout << text;
      return exit_ok;
    }
    auto sc = platform::parse_scenario(text, origin);
    if (!sc) return bad_input(sc.error().message);

    RunOptions o;
    if (speed->count() > 0 && !(f->speed > 0 && f->speed <= 1e6))
      return bad_input("--speed: must be more than 0 and at most 1000000");
    o.speed = speed->count() > 0 ? f->speed : (f->scenario.empty() ? demo_speed : 1.0);
    if (!f->for_text.empty()) {
      auto d = parse_duration(f->for_text);
      if (!d) return bad_input("--for: \"" + f->for_text + "\" is not a duration (examples: 1200, 1200s, 20m, 1h)");
      o.until_s = *d;
    } else {
      auto platform_end = platform::make_sim(*sc)->last_change_s();
      o.until_s = platform_end + static_cast<double>(sc->settings.migrate_after_s) + 60;
    }
    auto wanted = metrics_request(f->metrics, f->scenario.empty() ? metrics::default_address : "");
    if (!wanted) return bad_input(wanted.error().message);
    if (!wanted->address.empty()) {
      o.metrics.registry = std::make_shared<metrics::Registry>(MEMLEND_VERSION);
      o.metrics.serve = [r = o.metrics.registry, w = *wanted] { return serve_metrics(*r, w); };
    }
    o.datastore = f->datastore.empty() ? "memlend-datastore" : f->datastore;
    std::error_code ec;
    std::filesystem::create_directories(o.datastore, ec);
    if (ec || !std::filesystem::is_directory(o.datastore))
      return bad_input("--datastore: " + o.datastore + ": cannot make the directory" +
                       (ec ? " (" + ec.message() + ")" : std::string()));
    if (!f->events_out.empty()) {
      // Kept as it is: a resumed run adds to the log it left; a fresh one empties it below.
      auto fd = open_events_file(f->events_out, EventsFile::keep);
      if (!fd) return bad_input("--events-out: " + fd.error().message);
      ::close(*fd);
      o.sink.events_out = f->events_out;
    }
    if (f->events_keep_days > most_keep_days)
      return bad_input("--events-keep-days: must be from 0 to " + std::to_string(most_keep_days));
    if (f->events_keep_rows > most_keep_rows)
      return bad_input("--events-keep-rows: must be from 0 to " + std::to_string(most_keep_rows));
    if (f->data_path != "on" && f->data_path != "off")
      return bad_input("--data-path: \"" + f->data_path + "\" is neither on nor off");
    if (f->data_kib_per_gib < 4 || f->data_kib_per_gib > 1024 * 1024)
      return bad_input("--data-kib-per-gib: must be between 4 and 1048576");
    auto guests = guest_options(f->guests, f->data_kib_per_gib, f->data_path == "on" && !f->dry_run, *sc);
    if (!guests) return bad_input(guests.error().message);
    o.data.guests = *guests;
    o.data.enabled = f->data_path == "on" && !f->dry_run;
    o.data.bytes_per_mib = f->data_kib_per_gib;  // KiB per GiB is bytes per MiB
    o.sink.console = !f->quiet;
    o.dry_run = f->dry_run;
    o.scenario = *sc;
    o.start = fresh_start(*sc, 0);
    std::vector<std::string> resume_notes;
    if (!f->listen.empty()) {
      auto addr = parse_address(f->listen);
      if (!addr) return bad_input("--listen: \"" + f->listen + "\" is not HOST:PORT");
      if (auto bad = check_tls(f->cluster)) return bad_input(*bad);
      auto secret = read_secret(f->cluster.secret_file);
      if (!secret) return bad_input(secret.error().message);
      auto ca = ClusterCa::load(f->cluster.ca);
      if (!ca) return bad_input(ca.error().message);
      o.network.ca = *ca;
      o.network.enabled = true;
      o.network.listen_host = addr->first;
      o.network.listen_port = addr->second;
      o.network.cluster = f->cluster.cluster;
      o.network.secret = *secret;
      o.network.tls = {f->cluster.cert, f->cluster.key, f->cluster.ca};
    }
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
    if (!f->no_db && !f->dry_run) {
      ResumeOptions ro;
      ro.db = f->db;
      ro.scenario_text = text;
      ro.until_s = o.until_s;
      ro.data_path_in_process = !o.network.enabled;
      ro.datastore = o.datastore;
      ro.events_keep_days = f->events_keep_days;
      ro.events_keep_rows = f->events_keep_rows;
      if (o.metrics.registry)
        ro.on_commit = [h = o.metrics.registry->store_commit_duration()](double s) { h.observe(s); };
      auto resumed = open_run(*sc, ro);
      if (!resumed) return bad_input(resumed.error().message);
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
        if (auto err = catch_up_events_file(f->events_out, *resumed->store)) return bad_input("--events-out: " + *err);
    } else if (!f->events_out.empty()) {
      if (auto err = empty_events_file(f->events_out)) return bad_input("--events-out: " + *err);
    }
    if (!f->quiet) {
      for (const auto& n : resume_notes) std::cout << "memlend: " << n << '\n';
      std::cout << "memlend: running " << origin << " on the simulated platform at " << o.speed
                << "x until t=" << *o.until_s << "s" << (o.dry_run ? " (dry run)" : "") << '\n';
      if (o.data.enabled && !o.network.enabled)
        std::cout << "memlend: data path: each simulated host serves its memory on loopback over TCP, "
                  << f->data_kib_per_gib << " KiB for every GiB lent; a guest workload writes and checks it\n";
    }
    return run_controller(o);
  });
}

}  // namespace memlend::cli
