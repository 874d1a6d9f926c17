#include "node/controller.hpp"
#include "cli/cli.hpp"
#include "cli/guest_flags.hpp"
#include "cli/cluster_flags.hpp"
#include "cli/config_file.hpp"
#include "cli/logging.hpp"
#include "cli/metrics_option.hpp"
#include "cli/platform_flags.hpp"
#include "scenario/scenario.hpp"

#include <filesystem>
#include <optional>

namespace memlend::cli {

namespace {

struct AgentFlags {
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
  LogFlags log;
  PlatformFlags platform;
  std::int64_t reserved_mib = 0;
};

// What the agent makes of its options before it reaches its platform: the
// files it read, read once, and every problem.
struct AgentCheck {
  std::string secret;
  std::optional<NodeIdentity> identity;  // its certificate and key prove which host it is when it joins
  policy::Scenario scenario;             // none without --scenario
  std::vector<RunProblem> problems;
};

// The agent's checks of its options that read files but start and make
// nothing (check-config runs them too); the node's platform is not
// reached, since a config may be checked before the node's VMs run.
// The --controller list: HOST:PORT, comma-separated, each with a port, at
// most 16 (a cluster's controller runs on one of a few nodes).
Expected<std::vector<std::pair<std::string, std::uint16_t>>> controllers_of(const std::string& text) {
  std::vector<std::pair<std::string, std::uint16_t>> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t comma = std::min(text.find(',', start), text.size());
    std::string one = text.substr(start, comma - start);
    auto c = parse_address(one);
    if (!c || c->second == 0)
      return Error{"--controller: \"" + one + "\" is not HOST:PORT", ErrorCode::invalid_input};
    out.push_back(*c);
    if (out.size() > 16) return Error{"--controller: more than 16 addresses", ErrorCode::invalid_input};
    start = comma + 1;
  }
  return out;
}

AgentCheck check_agent(const AgentFlags& f) {
  AgentCheck c;
  std::vector<RunProblem>& out = c.problems;
  // A message that starts "--KEY:" is of that key, whatever was asked.
  auto of_its_key = [&](const std::string& fallback, const std::string& message) {
    std::string key = fallback;
    if (message.rfind("--", 0) == 0 && message.find(':') != std::string::npos)
      key = message.substr(2, message.find(':') - 2);
    out.push_back({key, message});
  };
  bool real = !f.platform.platform.empty();
  if (f.controller.empty()) out.push_back({"controller", "agent: --controller is required"});
  else if (auto c = controllers_of(f.controller); !c) out.push_back({"controller", c.error().message});
  if (!real && f.host.empty()) out.push_back({"host", "agent: --host is required (or --platform)"});
  if (!real && f.scenario.empty()) out.push_back({"scenario", "agent: --scenario is required (or --platform)"});
  if (!parse_address(f.listen)) out.push_back({"listen", "--listen: \"" + f.listen + "\" is not HOST:PORT"});
  if (auto bad = check_tls(f.cluster)) {
    of_its_key("tls-cert", *bad);
  } else {
    if (auto secret = read_secret(f.cluster.secret_file); !secret)
      of_its_key("cluster-secret-file", secret.error().message);
    else
      c.secret = std::move(*secret);
    if (auto identity = NodeIdentity::load(f.cluster.cert, f.cluster.key); !identity)
      of_its_key("tls-cert", identity.error().message);
    else
      c.identity = std::move(*identity);
  }
  if (!f.scenario.empty()) {
    auto sc = platform::load_scenario(f.scenario);
    // On a real node the scenario gives settings only (an open cluster's
    // `"hosts": []`); the host is the platform's.
    bool sim = !real || f.platform.platform == "sim";
    if (!sc) {
      out.push_back({"scenario", sc.error().message});
    } else {
      if (sim && !f.host.empty() && !sc->find_host(f.host))
        out.push_back({"host", "--host: \"" + f.host + "\" is not a host of " + f.scenario});
      c.scenario = std::move(*sc);
    }
  }
  if (f.data_path != "on" && f.data_path != "off")
    out.push_back({"data-path", "--data-path: \"" + f.data_path + "\" is neither on nor off"});
  if (f.data_kib_per_gib < 4 || f.data_kib_per_gib > 1024 * 1024)
    out.push_back({"data-kib-per-gib", "--data-kib-per-gib: must be between 4 and 1048576"});
  if (auto wanted = metrics_request(f.metrics, ""); !wanted) of_its_key("metrics", wanted.error().message);
  return c;
}

}  // namespace

RunCommand make_agent(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "agent",
      "Run memlend's side of one host of a cluster: join the controller over TLS,\n"
      "report the host's telemetry, and carry out the controller's actions.");
  auto f = std::make_shared<AgentFlags>();
  // Not ->required(): a config file may name them, and CLI11 checks required
  // options before the file is read.
  cmd->add_option("--controller", f->controller,
                  "Where the cluster's controller may answer, HOST:PORT[,HOST:PORT...] (required): tried in turn, "
                  "from the last that answered, at start and whenever the controller is lost")
      ->type_name("ADDRS");
  cmd->add_option("--host", f->host,
                  "NAME of the host this agent speaks for, as its certificate names it: a host of\n"
                  "the scenario, or with --platform the node's (default: what the platform says)");
  cmd->add_option("--scenario", f->scenario,
                  "Scenario FILE: the simulated platform this agent reports its host from\n"
                  "(required without --platform; with --platform sim, the host's scenario)")
      ->type_name("FILE");
  add_platform_flags(*cmd, f->platform);
  add_receive_flags(*cmd, f->platform);
  cmd->add_option("--reserved-mib", f->reserved_mib,
                  "With --platform: MIB of this node never lent (its own growth, HA restart room;\n"
                  "default 0)")
      ->type_name("MIB")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 40));
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
  add_log_flags(cmd, f->log, "info");
  return {with_config_file(cmd, [f] {
    setup_logging(f->log);
    // With --platform the node says what its host is; without, the scenario.
    bool real = !f->platform.platform.empty();
    AgentCheck c = check_agent(*f);
    if (!c.problems.empty()) return bad_input(c.problems.front().message);
    AgentOptions o;
    if (real) {
      auto node = open_platform(f->platform, f->scenario, f->host);
      if (!node) return bad_input(node.error().message);
      o.node = std::make_shared<platform::NodeSampler>(std::shared_ptr<platform::NodePlatform>(std::move(*node)),
                                                       platform::DemandSettings{}, f->reserved_mib);
      // Once now: the node's name when --host is not given, and its memory
      // for the pool it lends from.
      auto first = o.node->sample();
      if (!first) return bad_input("--platform " + f->platform.platform + ": " + first.error().message);
      if (f->host.empty()) f->host = first->facts.name;
      if (f->host.empty()) return bad_input("--host: the platform names no host; give --host");
      o.memory_mib = std::max<std::int64_t>(0, first->facts.memory_mib - first->facts.reserved_mib);
    }
    auto* sc = &c.scenario;
    o.cluster = f->cluster.cluster;
    o.secret = std::move(c.secret);
    o.host = f->host;
    o.data_addr = f->listen;
    o.controllers = *controllers_of(f->controller);
    o.scenario = *sc;
    o.tls = {f->cluster.cert, f->cluster.key, f->cluster.ca};
    o.identity = std::make_shared<const NodeIdentity>(std::move(*c.identity));
    o.console = !f->quiet;
    auto guests = guest_options(f->guests, f->data_kib_per_gib, f->data_path == "on", real ? nullptr : sc);
    if (!guests) return bad_input(guests.error().message);
    o.data.guests = *guests;
    o.data.enabled = f->data_path == "on";
    o.data.bytes_per_mib = f->data_kib_per_gib;
    auto wanted = metrics_request(f->metrics, "");
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
  }), [f] { return check_agent(*f).problems; }};
}

Action add_agent(CLI::App& app) { return make_agent(app).action; }

}  // namespace memlend::cli
