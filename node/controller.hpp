// Starting and stopping the controller's actor system: used by `memlend run`
// and by the tests that run the whole controller.
#pragma once

#include "identity/cluster_auth.hpp"
#include "dataplane/data_plane.hpp"
#include "actors/event_sink.hpp"
#include "actors/metrics_actor.hpp"
#include "actors/planner.hpp"
#include "firmware_hooks/node_sampler.hpp"
#include "firmware_hooks/platform.hpp"
#include "core/health.hpp"

#include <caf/actor_system_config.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace memlend {

// TLS between nodes (caf-openssl): all three files, so peers are authenticated,
// not merely encrypted.
struct TlsFiles {
  std::string certificate;
  std::string key;
  std::string ca;
};

// Cluster mode of the controller: agents join on listen_host:listen_port.
struct ControllerNetwork {
  bool enabled = false;
  std::string listen_host;
  std::uint16_t listen_port = 0;
  std::string cluster;
  std::string secret;
  TlsFiles tls;
  std::shared_ptr<const ClusterCa> ca;  // tls.ca, loaded: checks each agent's certificate
  // No scenario: hosts join with the facts their agents read (ClusterConfig::open).
  bool open = false;
};

// The real data path in a single-process run: every simulated host serves a
// donor pool on loopback and every VM's remote memory is really mapped here.
struct DataPathOptions {
  bool enabled = false;
  std::uint64_t bytes_per_mib = 1024;  // real bytes per MiB lent
  GuestMemoryOptions guests;           // real QEMU guests, if any VMs are named
};

struct RunOptions {
  // The cluster as the actors start it, and what they start with (fresh, or
  // resumed from the store).
  policy::Scenario scenario;
  StartState start;
  std::shared_ptr<store::Store> store;  // none: nothing is durable (dry runs, tests)
  std::string fingerprint;
  DataPathOptions data;
  ControllerNetwork network;
  std::shared_ptr<platform::Platform> platform;
  double speed = 1;
  double origin_s = 0;
  std::optional<double> until_s;
  bool dry_run = false;
  std::string datastore;
  SinkOptions sink;
  MetricsOptions metrics;
  // What /readyz reads and the pulse writes; none: one of its own, read by no one.
  std::shared_ptr<Health> health;
  // A controller on the leader of a replicated store: asked every half
  // second, and again when the actors stop after an error; false stops the
  // controller, and run_controller returns lost_leadership
  // (node/leadership.hpp).
  std::function<bool()> still_leading;
};

// Registers memlend's message types, under the names other nodes expect.
void register_types(caf::actor_system_config& cfg);

// CAF's network layer with TLS, as controller and agents use it.
void configure_network(caf::actor_system_config& cfg, const TlsFiles& tls);

// Runs until the scenario clock reaches until_s, SIGINT/SIGTERM, or a fatal
// error, telling systemd (when it started this process) READY=1 at the
// actors' first answer to the pulse, STATUS= as it changes and WATCHDOG=1 at
// each answer (see actors/pulse.hpp); returns the process exit status (0, 1 after a fatal error, 2 when
// the cluster port or the metrics address cannot be opened).
int run_controller(const RunOptions& options);

struct AgentOptions {
  std::string cluster;
  std::string secret;
  std::string host;
  std::string data_addr;
  std::vector<std::pair<std::string, std::uint16_t>> controllers;
  policy::Scenario scenario;
  TlsFiles tls;
  std::shared_ptr<const NodeIdentity> identity;  // tls.certificate and tls.key, loaded
  bool console = true;
  DataPathOptions data;
  std::string datastore;
  MetricsOptions metrics;  // the agent's own data path only
  // A real node (agent --platform): its readings, and the memory its pool
  // lends from (the node's, less its reserve); none: `scenario`'s host.
  std::shared_ptr<platform::NodeSampler> node;
  std::int64_t memory_mib = 0;
};

// Runs an agent until SIGINT/SIGTERM; returns 2 when the controller refused
// it (wrong cluster or secret) or the metrics address cannot be opened, else 0.
int run_agent(const AgentOptions& options);

}  // namespace memlend
