#include "node/controller.hpp"

#include "actors/agent.hpp"
#include "actors/metrics_actor.hpp"
#include "demo/guest_workload.hpp"
#include "core/log.hpp"
#include "core/stop_signals.hpp"
#include "node/leadership.hpp"
#include "actors/supervisor.hpp"
#include "actors/pulse.hpp"
#include "node/systemd_notify.hpp"

#include <caf/all.hpp>
#include <caf/io/all.hpp>
#include <caf/openssl/all.hpp>

#include <random>

#include <atomic>
#include <csignal>
#include <iostream>
#include <thread>

namespace memlend {

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<LogEvent>("memlend.log_event");
  cfg.add_message_type<LeaseInfo>("memlend.lease");
  cfg.add_message_type<MirrorInfo>("memlend.mirror");
  cfg.add_message_type<VmCheckpoint>("memlend.vm_checkpoint");
  cfg.add_message_type<HostCheckpoint>("memlend.host_checkpoint");
  cfg.add_message_type<platform::HostSample>("memlend.host_sample");
  cfg.add_message_type<platform::VmSample>("memlend.vm_sample");
  cfg.add_message_type<std::vector<platform::VmSample>>("memlend.vm_samples");
  cfg.add_message_type<AgentHello>("memlend.agent_hello");
  cfg.add_message_type<HostFacts>("memlend.host_facts");
  cfg.add_message_type<Placement>("memlend.placement");
  cfg.add_message_type<RemoteState>("memlend.remote_state");
  cfg.add_message_type<JoinReply>("memlend.join_reply");
  cfg.add_message_type<std::vector<LeaseInfo>>("memlend.leases");
  cfg.add_message_type<std::vector<Placement>>("memlend.placements");
  cfg.add_message_type<std::vector<std::uint64_t>>("memlend.ids");
  cfg.add_message_type<NeedAnswer>("memlend.need_answer");
  cfg.add_message_type<PlannerView>("memlend.planner_view");
  cfg.add_message_type<ChildKind>("memlend.child_kind");
}

int run_actors(const RunOptions& options, std::shared_ptr<DataPlane> plane);
int run_agent_actors(const AgentOptions& options, std::shared_ptr<DataPlane> plane,
                     std::shared_ptr<const demo::GuestWorkload> guest, const std::string& data_addr);

// Peers of another application are refused, and a silent peer is noticed
// within seconds.
void configure_network(caf::actor_system_config& cfg, const TlsFiles& tls) {
  cfg.load<caf::io::middleman>();
  cfg.load<caf::openssl::manager>();
  cfg.openssl_certificate = tls.certificate;
  cfg.openssl_key = tls.key;
  cfg.openssl_cafile = tls.ca;
  cfg.set("middleman.app-identifiers", std::vector<std::string>{"memlend-cluster-1"});
  cfg.set("middleman.heartbeat-interval", caf::timespan(std::chrono::milliseconds(500)));
  cfg.set("middleman.connection-timeout", caf::timespan(std::chrono::seconds(3)));
}

namespace {

// A thread that turns the first SIGINT or SIGTERM into `stop()`; it ends by
// itself once `done` is set. The signals are blocked already.
struct SignalWatch {
  std::atomic<bool> done{false};
  std::thread thread;

  template <class F>
  explicit SignalWatch(F stop) {
    thread = std::thread([this, stop] {
      while (!done)
        if (stop_signal_within(std::chrono::milliseconds(200))) {
          stop();
          return;
        }
    });
  }
  ~SignalWatch() {
    done = true;
    thread.join();
  }
};

// A thread that asks `leads` every half second and calls `lost()` once it
// says no (a controller on a replicated store's leader); none without `leads`.
struct LeadershipWatch {
  std::atomic<bool> done{false};
  std::thread thread;

  LeadershipWatch(std::function<bool()> leads, std::function<void()> lost) {
    if (!leads) return;
    thread = std::thread([this, leads, lost] {
      while (!done) {
        for (int i = 0; i < 5 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (!done && !leads()) {
          lost();
          return;
        }
      }
    });
  }
  ~LeadershipWatch() {
    done = true;
    if (thread.joinable()) thread.join();
  }
};

}  // namespace

namespace {

// Every simulated host that is up serves its (scaled) memory on loopback.
Expected<std::shared_ptr<DataPlane>> start_data_plane(const RunOptions& o) {
  DataPlaneOptions d;
  d.bytes_per_mib = o.data.bytes_per_mib;
  d.block_bytes = static_cast<std::uint64_t>(o.scenario.settings.rdma_block_kib) * 1024;
  d.buffer_bytes = static_cast<std::uint64_t>(policy::buffer_kib_per_lease(o.scenario.settings)) * 1024;
  d.datastore = o.datastore;
  // Each pool gets a random secret: it only needs to be unguessable for this one run.
  auto plane = std::make_shared<DataPlane>(d);
  if (!o.data.guests.vms.empty())
    if (auto s = plane->serve_guests(o.data.guests); !s) return Error{"--memory-dir: " + s.error().message};
  for (const auto& h : o.scenario.hosts) {
    if (!h.up) continue;
    auto addr = plane->serve(h.name, h.memory_mib, "127.0.0.1:0");
    if (!addr) return Error{addr.error().message};
  }
  return plane;
}

// The plane's region listener for the life of an actor system: cleared
// before the system goes, since the handles it sends to must not outlive it.
class ListenToRegions {
 public:
  ListenToRegions() = default;
  ListenToRegions(const ListenToRegions&) = delete;
  ListenToRegions& operator=(const ListenToRegions&) = delete;
  ~ListenToRegions() {
    if (plane_) plane_->set_region_listener({});
  }
  void start(DataPlane* plane, DataPlane::RegionListener listener) {
    plane_ = plane;
    plane_->set_region_listener(std::move(listener));
  }

 private:
  DataPlane* plane_ = nullptr;
};

// The actors are gone; what they asked of the data path gets a few seconds
// to finish. The stop signals are blocked by now, so a wait without an end
// here could only be ended by SIGKILL; the store keeps what was not done.
// The guest goes before the plane: its next step would touch memory about to go.
void finish_data_plane(DataPlane& plane, demo::GuestWorkload* guest) {
  constexpr std::chrono::seconds grace{5};
  if (!plane.drain_for(grace))
    std::cerr << "memlend: stopping without waiting longer for the data path (" << plane.busy_with()
              << "); the store keeps it for the next start\n";
  if (guest) guest->stop();
  plane.shutdown();
}

// What each guest workload saw, a console line or two per VM. `prefix`
// names who says it; `host` is that agent's host, if it is one.
void report_guest(const std::string& prefix, const std::string& host, const std::vector<policy::Vm>& vms,
                  const demo::GuestWorkload& guest) {
  for (const auto& v : vms) {
    demo::GuestStats g = guest.stats(v.name);
    if (g.bytes_written == 0) continue;
    log::Fields about;
    about.vm = v.name;
    about.host = host;
    std::size_t wrong = g.mismatches;
    log::console(prefix,
                 "the guest workload of " + v.name + " wrote " + std::to_string(g.bytes_written / 1024) +
                     " KiB of its remote memory and read back " + std::to_string(g.bytes_verified / 1024) +
                     " KiB: " + std::to_string(wrong) + (wrong == 1 ? " word" : " words") + " wrong",
                 about, wrong ? log::Level::error : log::Level::info);
    if (g.lost_bytes > 0)
      log::console(prefix,
                   v.name + " lost " + std::to_string(g.lost_bytes / 1024) +
                       " KiB of its remote memory: its donor failed and no mirror held it (the guest got a memory "
                       "error there, as a VM would)",
                   about, log::Level::error);
  }
}

// The pulse's answers, told to /readyz and to systemd: READY=1 with the
// first, WATCHDOG=1 with each when systemd watches, STATUS= when it changed.
pulse_actor start_pulse(caf::actor_system& sys, const supervisor_actor& sup, bool cluster,
                        std::shared_ptr<Health> health) {
  auto watchdog = systemd::watchdog_interval();
  PulseConfig pc;
  pc.supervisor = sup;
  pc.cluster = cluster;
  // Twice per watchdog interval, as systemd advises, and at least once a
  // second, so that /readyz is never more than a few seconds behind.
  pc.period = std::chrono::seconds(1);
  // A floor, so that a tiny WatchdogSec= cannot turn the pulse into a busy loop.
  if (watchdog) pc.period = std::max<caf::timespan>(std::min<caf::timespan>(pc.period, *watchdog / 2),
                                                    std::chrono::milliseconds(50));
  struct Told {
    bool ready = false;
    std::string status;
  };
  auto told = std::make_shared<Told>();
  pc.answered = [health, told, watched = watchdog.has_value()](const PulseReading& r) {
    health->answered(r, Health::Clock::now());
    std::string msg;
    if (!told->ready) msg += "READY=1\n";
    if (watched) msg += "WATCHDOG=1\n";
    std::string status = health->status();
    if (status != told->status) msg += "STATUS=" + status + "\n";
    told->ready = true;
    told->status = std::move(status);
    if (!msg.empty()) systemd::notify(msg);
  };
  return sys.spawn(pulse, std::move(pc));
}

}  // namespace

int run_controller(const RunOptions& options) {
  StopSignalsBlocked blocked;
  auto exposer = start_metrics_server(options.metrics);
  if (!exposer) {
    std::cerr << "memlend: " << exposer.error().message << '\n';
    return 2;
  }
  std::shared_ptr<DataPlane> plane;
  std::unique_ptr<demo::GuestWorkload> guest;  // the controller's own VMs' (memlend run)
  if (options.data.enabled && options.network.enabled) {
    // The agents serve memory and map it; the controller only grants and releases.
    DataPlaneOptions d;
    d.bytes_per_mib = options.data.bytes_per_mib;
    d.datastore = options.datastore;
    plane = std::make_shared<DataPlane>(d);
  } else if (options.data.enabled) {
    auto p = start_data_plane(options);
    if (!p) {
      std::cerr << "memlend: data path: " << p.error().message << '\n';
      return 1;
    }
    plane = *p;
    guest = std::make_unique<demo::GuestWorkload>(*plane);
  }
  int status = run_actors(options, plane);
  if (plane) finish_data_plane(*plane, guest.get());
  if (guest) {
    if (options.sink.console) report_guest("memlend: ", {}, options.scenario.vms, *guest);
    for (const auto& v : options.scenario.vms)
      if (guest->stats(v.name).mismatches > 0) status = status ? status : 1;
  }
  return status;
}

int run_actors(const RunOptions& options, std::shared_ptr<DataPlane> plane) {
  caf::actor_system_config cfg;
  register_types(cfg);
  if (options.network.enabled) configure_network(cfg, options.network.tls);
  int status = 0;
  caf::actor_system sys{cfg};
  auto metrics = spawn_metrics(sys, options.metrics, options.scenario, options.speed, options.origin_s, plane);
  SinkOptions so = options.sink;
  so.metrics = metrics;
  so.store = options.store;
  auto sink = sys.spawn(event_sink, so);
  SupervisorConfig sc;
  sc.scenario = options.scenario;
  sc.start = options.start;
  sc.store = options.store;
  sc.fingerprint = options.fingerprint;
  sc.cluster.enabled = options.network.enabled;
  sc.cluster.name = options.network.cluster;
  sc.cluster.secret = options.network.secret;
  sc.cluster.ca = options.network.ca;
  sc.cluster.open = options.network.open;
  sc.speed = options.speed;
  sc.origin_s = options.origin_s;
  sc.until_s = options.until_s;
  sc.dry_run = options.dry_run;
  sc.datastore = options.datastore;
  sc.platform = options.platform;
  sc.plane = plane;
  sc.sink = sink;
  sc.metrics = options.metrics.registry.get();
  auto sup = sys.spawn(supervisor, sc);
  bind_metrics(metrics, sup);
  caf::scoped_actor waiter{sys};
  waiter->monitor(sup);
  // This process maps the VMs' memory (the simulated platform): what its
  // regions find wrong with a mirror goes to the planner as it happens.
  ListenToRegions listen;
  if (plane && !options.network.enabled && !options.dry_run) {
    caf::actor planner;
    waiter->request(sup, caf::infinite, atom::get::value, ChildKind::planner, std::uint64_t{0})
        .receive([&](caf::actor a) { planner = a; }, [](caf::error&) {});
    auto to = caf::actor_cast<planner_actor>(planner);
    listen.start(plane.get(), [to](const std::string& vm, std::uint64_t, const rdma::RegionEvent& e) {
      if (e.kind == rdma::RegionEvent::Kind::mirror_failed)
        caf::anon_send(to, atom::mirrorfail::value, own_data_path, vm, e.detail);
    });
  }
  if (options.network.enabled) {
    caf::actor registrar;
    waiter->request(sup, caf::infinite, atom::get::value, ChildKind::registrar, std::uint64_t{0})
        .receive([&](caf::actor a) { registrar = a; }, [](caf::error&) {});
    const auto& net = options.network;
    auto port = caf::openssl::publish(registrar, net.listen_port, net.listen_host.c_str(), true);
    if (!port) {
      std::cerr << "memlend: --listen " << net.listen_host << ":" << net.listen_port
                << ": cannot listen (" << sys.render(port.error()) << ")\n";
      waiter->send(sup, atom::shutdown::value);
      waiter->receive([](const caf::down_msg&) {});
      return 2;
    }
    std::cout << "memlend: cluster " << net.cluster << " listening on " << net.listen_host << ":" << *port << '\n'
              << std::flush;
  }
  auto health = options.health ? options.health : std::make_shared<Health>();
  start_pulse(sys, sup, options.network.enabled, health);
  SignalWatch signals([sup, health] {
    health->stopping();
    systemd::notify("STOPPING=1");
    caf::anon_send(sup, atom::shutdown::value);
  });
  std::atomic<bool> deposed{false};
  LeadershipWatch leadership(options.still_leading, [sup, &deposed] {
    deposed = true;
    caf::anon_send(sup, atom::shutdown::value);
  });
  waiter->receive([&](const caf::down_msg& dm) {
    // A decision the store could not record, as its leader was lost, stops
    // the actors before the watch's next look: the term ended all the same,
    // and the next leader's controller (maybe this one's again) resumes from
    // the store.
    if (dm.reason && !deposed && options.still_leading && !options.still_leading()) deposed = true;
    if (dm.reason && dm.reason != caf::exit_reason::user_shutdown && !deposed) {
      std::cerr << "memlend: stopped after an error: " << sys.render(dm.reason) << '\n';
      status = 1;
    }
  });
  health->stopping();
  if (deposed) return lost_leadership;
  systemd::notify("STOPPING=1");
  return status;
}

int run_agent(const AgentOptions& options) {
  StopSignalsBlocked blocked;
  auto exposer = start_metrics_server(options.metrics);
  if (!exposer) {
    std::cerr << "memlend: " << exposer.error().message << '\n';
    return 2;
  }
  std::shared_ptr<DataPlane> plane;
  std::shared_ptr<demo::GuestWorkload> guest;
  std::string data_addr = options.data_addr;
  if (options.data.enabled) {
    DataPlaneOptions d;
    d.bytes_per_mib = options.data.bytes_per_mib;
    d.block_bytes = static_cast<std::uint64_t>(options.scenario.settings.rdma_block_kib) * 1024;
    d.buffer_bytes = static_cast<std::uint64_t>(policy::buffer_kib_per_lease(options.scenario.settings)) * 1024;
    d.datastore = options.datastore;
    plane = std::make_shared<DataPlane>(d);
    std::int64_t pool_mib = options.memory_mib;
    if (!options.node) pool_mib = options.scenario.hosts[*options.scenario.find_host(options.host)].memory_mib;
    // A full node (every MiB held by its VMs or reserved) has nothing to
    // lend: it serves no pool, and may still borrow for its VMs.
    if (pool_mib > 0) {
      auto addr = plane->serve(options.host, pool_mib, options.data_addr, options.identity->pool_secret());
      if (!addr) {
        std::cerr << "memlend: --listen " << options.data_addr << ": " << addr.error().message << '\n';
        return 2;
      }
      data_addr = *addr;
    } else if (options.console) {
      log::Fields about;
      about.host = options.host;
      log::console("memlend agent " + options.host + ": ", "nothing to lend (no memory available here): no pool served",
                   about);
    }
    if (!options.data.guests.vms.empty()) {
      if (auto s = plane->serve_guests(options.data.guests); !s) {
        std::cerr << "memlend: --memory-dir: " << s.error().message << '\n';
        return 2;
      }
    }
    guest = std::make_shared<demo::GuestWorkload>(*plane);
  }
  int status = run_agent_actors(options, plane, guest, data_addr);
  if (plane) {
    finish_data_plane(*plane, guest.get());
    if (options.console)
      report_guest("memlend agent " + options.host + ": ", options.host, options.scenario.vms, *guest);
  }
  return status;
}

int run_agent_actors(const AgentOptions& options, std::shared_ptr<DataPlane> plane,
                     std::shared_ptr<const demo::GuestWorkload> guest, const std::string& data_addr) {
  caf::actor_system_config cfg;
  register_types(cfg);
  configure_network(cfg, options.tls);
  caf::actor_system sys{cfg};
  AgentConfig ac;
  ac.cluster = options.cluster;
  ac.secret = options.secret;
  ac.identity = options.identity;
  ac.host = options.host;
  ac.data_addr = data_addr;
  ac.plane = plane;
  ac.guest = std::move(guest);
  ac.controllers = options.controllers;
  ac.scenario = options.scenario;
  ac.console = options.console;
  ac.node = options.node;
  for (const auto& [vm, config] : options.data.guests.vms) ac.plane_plugs.insert(vm);
  // A new number per process start: the controller tells a restarted agent
  // (whose lent memory is gone) from one that was only out of reach.
  std::random_device rd;
  ac.incarnation = (std::uint64_t{rd()} << 32 | rd()) | 1;
  // A real node's platform answers in its own time (a QMP socket, a hook):
  // that agent waits on it on a thread of its own, not on the scheduler's.
  auto a = ac.node ? sys.spawn<caf::detached>(agent, ac) : sys.spawn(agent, ac);
  bind_metrics(spawn_metrics(sys, options.metrics, options.scenario, 1, 0, plane, false), a);
  // What this host's regions find wrong with a mirror goes to the controller
  // through the agent.
  ListenToRegions listen;
  if (plane)
    listen.start(plane.get(), [a](const std::string& vm, std::uint64_t, const rdma::RegionEvent& e) {
      if (e.kind == rdma::RegionEvent::Kind::mirror_failed) caf::anon_send(a, atom::mirrorfail::value, vm, e.detail);
    });
  caf::scoped_actor waiter{sys};
  waiter->monitor(a);
  SignalWatch signals([a] { caf::anon_send(a, atom::shutdown::value); });
  int status = 0;
  waiter->receive([&](const caf::down_msg& dm) {
    if (dm.reason && dm.reason != caf::exit_reason::user_shutdown) status = 2;
  });
  return status;
}

}  // namespace memlend
