#include "node/controller.hpp"
#include "cli/cli.hpp"
#include "cli/guest_flags.hpp"
#include "cli/cluster_flags.hpp"
#include "cli/config_file.hpp"
#include "cli/logging.hpp"
#include "cli/metrics_option.hpp"
#include "scenario/scenario.hpp"

#include <filesystem>

namespace memlend::cli {

Action add_agent(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "agent",
      "Run memlend's side of one host of a cluster: join the controller over TLS,\n"
      "report the host's telemetry, and carry out the controller's actions.");
  struct Flags {
    std::string controller;
    std::string host;
    std::string scenario;
    std::string listen = "127.0.0.1:0";
    bool quiet = false;
    ClusterFlags cluster;
    std::string datastore = "memlend-datastore";
    std::string data_path = "on";
    std::uint64_t data_kib_per_gib = 1024;
    GuestFlags guests;
    std::string metrics;
    std::string log_level;
  };
  auto f = std::make_shared<Flags>();
  // Not ->required(): a config file may name them, and CLI11 checks required
  // options before the file is read.
  cmd->add_option("--controller", f->controller, "The controller's cluster address, HOST:PORT (required)");
  cmd->add_option("--host", f->host, "The host this agent speaks for, a name in the scenario (required)");
  cmd->add_option("--scenario", f->scenario,
                  "Scenario file: the simulated platform this agent reports its host from (required)")
      ->type_name("FILE");
  cmd->add_option("--listen", f->listen, "Where this host's data path listens, HOST:PORT");
  cmd->add_flag("--quiet", f->quiet, "Print nothing as it goes");
  cmd->add_option("--datastore", f->datastore,
                  "The shared datastore (the same directory on every node), for mirror files")
      ->type_name("DIR");
  cmd->add_option("--data-path", f->data_path,
                  "on: serve this host's memory on --listen and map its VMs' remote memory,\n"
                  "checked by a guest workload; off: the data path is only simulated (default on)")
      ->type_name("{on,off}");
  auto* scale = cmd->add_option("--data-kib-per-gib", f->data_kib_per_gib,
                  "Real memory moved per GiB lent, in KiB; must equal the controller's (default 1024)");
  add_guest_flags(cmd, f->guests, scale);
  add_cluster_flags(cmd, f->cluster);
  add_metrics_option(cmd, f->metrics, "nothing is served (the controller serves the cluster's metrics)");
  add_log_level(cmd, f->log_level, "info");
  return with_config_file(cmd, [f] {
    setup_logging(f->log_level);
    for (auto [flag, value] : {std::pair{"--controller", &f->controller}, {"--host", &f->host},
                               {"--scenario", &f->scenario}})
      if (value->empty()) return bad_input(std::string("agent: ") + flag + " is required");
    auto controller = parse_address(f->controller);
    if (!controller || controller->second == 0)
      return bad_input("--controller: \"" + f->controller + "\" is not HOST:PORT");
    if (!parse_address(f->listen)) return bad_input("--listen: \"" + f->listen + "\" is not HOST:PORT");
    if (auto bad = check_tls(f->cluster)) return bad_input(*bad);
    auto secret = read_secret(f->cluster.secret_file);
    if (!secret) return bad_input(secret.error().message);
    // Its certificate and key prove which host it is when it joins.
    auto identity = NodeIdentity::load(f->cluster.cert, f->cluster.key);
    if (!identity) return bad_input(identity.error().message);
    auto sc = platform::load_scenario(f->scenario);
    if (!sc) return bad_input(sc.error().message);
    if (!sc->find_host(f->host)) return bad_input("--host: \"" + f->host + "\" is not a host of " + f->scenario);
    AgentOptions o;
    o.cluster = f->cluster.cluster;
    o.secret = *secret;
    o.host = f->host;
    o.data_addr = f->listen;
    o.controller_host = controller->first;
    o.controller_port = controller->second;
    o.scenario = *sc;
    o.tls = {f->cluster.cert, f->cluster.key, f->cluster.ca};
    o.identity = std::make_shared<const NodeIdentity>(std::move(*identity));
    o.console = !f->quiet;
    if (f->data_path != "on" && f->data_path != "off")
      return bad_input("--data-path: \"" + f->data_path + "\" is neither on nor off");
    if (f->data_kib_per_gib < 4 || f->data_kib_per_gib > 1024 * 1024)
      return bad_input("--data-kib-per-gib: must be between 4 and 1048576");
    auto guests = guest_options(f->guests, f->data_kib_per_gib, f->data_path == "on", *sc);
    if (!guests) return bad_input(guests.error().message);
    o.data.guests = *guests;
    o.data.enabled = f->data_path == "on";
    o.data.bytes_per_mib = f->data_kib_per_gib;
    auto wanted = metrics_request(f->metrics, "");
    if (!wanted) return bad_input(wanted.error().message);
    if (!wanted->address.empty()) {
      o.metrics.registry = std::make_shared<metrics::Registry>(MEMLEND_VERSION, "agent");
      o.metrics.serve = [r = o.metrics.registry, w = *wanted] { return serve_metrics(*r, w); };
    }
    std::error_code ec;
    std::filesystem::create_directories(f->datastore, ec);
    if (ec || !std::filesystem::is_directory(f->datastore))
      return bad_input("--datastore: " + f->datastore + ": cannot make the directory");
    o.datastore = f->datastore;
    return run_agent(o);
  });
}

}  // namespace memlend::cli
