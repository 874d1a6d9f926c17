#include "actors/controller.hpp"

#include "actors/supervisor.hpp"

#include <caf/all.hpp>

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
}

int run_controller(const RunOptions& options) {
  // Signals go to a thread of ours, which asks the supervisor to stop politely.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  caf::actor_system_config cfg;
  register_types(cfg);
  int status = 0;
  {
    caf::actor_system sys{cfg};
    auto sink = sys.spawn(event_sink, options.sink);
    SupervisorConfig sc;
    sc.scenario = options.scenario;
    sc.speed = options.speed;
    sc.origin_s = options.origin_s;
    sc.until_s = options.until_s;
    sc.dry_run = options.dry_run;
    sc.datastore = options.datastore;
    sc.platform = options.platform;
    sc.sink = sink;
    auto sup = sys.spawn(supervisor, sc);

    std::atomic<bool> done{false};
    std::thread watcher([&] {
      timespec wait{0, 200'000'000};
      while (!done) {
        int sig = sigtimedwait(&stop_signals, nullptr, &wait);
        if (sig == SIGINT || sig == SIGTERM) {
          caf::anon_send(sup, atom::shutdown::value);
          return;
        }
      }
    });
    caf::scoped_actor waiter{sys};
    waiter->monitor(sup);
    waiter->receive([&](const caf::down_msg& dm) {
      if (dm.reason && dm.reason != caf::exit_reason::user_shutdown) {
        std::cerr << "memlend: stopped after an error: " << sys.render(dm.reason) << '\n';
        status = 1;
      }
    });
    done = true;
    watcher.join();
  }
  pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  return status;
}

}  // namespace memlend
