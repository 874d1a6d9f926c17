// `memlend inspect`: what memlend sees on this node, through the platform an
// agent here would use — an operator's first command on a new node. It reads
// the platform twice, --interval apart, because a rate (CPU, faults) and the
// demand estimator's hysteresis both need two readings; then it prints the
// host, each VM and the demand memlend infers for it, and exits.
#include "cli/cli.hpp"
#include "cli/config_file.hpp"
#include "cli/logging.hpp"
#include "cli/inspect.hpp"

#include <nlohmann/json.hpp>

#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

namespace memlend::cli {

namespace {

struct InspectFlags {
  PlatformFlags platform;
  std::string scenario;
  std::string host;
  std::string interval = "1s";
  bool json = false;
  LogFlags log;
};

template <typename T>
nlohmann::ordered_json opt(const std::optional<T>& v) {
  return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json(nullptr);
}

template <typename T>
std::string cell(const std::optional<T>& v) {
  if (!v) return "-";
  std::ostringstream o;
  o << std::fixed << std::setprecision(std::is_floating_point<T>::value ? 1 : 0) << *v;
  return o.str();
}

nlohmann::ordered_json host_json(const platform::HostReading& h) {
  return {{"name", h.name},
          {"memory_mib", h.memory_mib},
          {"available_mib", h.available_mib},
          {"cpus", h.cpus},
          {"cpu_mhz", h.cpu_mhz},
          {"memory_pressure_some", opt(h.memory_pressure_some)},
          {"memory_pressure_full", opt(h.memory_pressure_full)},
          {"cpu_pressure_some", opt(h.cpu_pressure_some)}};
}

nlohmann::ordered_json vm_json(const platform::VmReading& v, const platform::VmDemand& d) {
  return {{"name", v.name},
          {"running", v.running},
          {"memory_mib", v.memory_mib},
          {"vcpus", v.vcpus},
          {"plugged_mib", v.plugged_mib},
          {"pluggable_mib", v.pluggable_mib},
          {"balloon_mib", opt(v.balloon_mib)},
          {"guest_available_mib", opt(v.guest_available_mib)},
          {"guest_free_mib", opt(v.guest_free_mib)},
          {"swap_in", opt(v.swap_in)},
          {"swap_out", opt(v.swap_out)},
          {"major_faults", opt(v.major_faults)},
          {"rss_mib", opt(v.rss_mib)},
          {"cpu_s", opt(v.cpu_s)},
          {"demand", {{"memory_mib", d.memory_mib}, {"cpu_mhz", d.cpu_mhz}, {"reason", d.reason}}}};
}

void print_text(const Inspection& in) {
  const auto& r = in.reading;
  const auto& demand = in.demand;
  const std::string& backend = in.backend;
  const auto& h = r.host;
  std::cout << "host " << h.name << " (" << backend << "): " << h.memory_mib << " MiB, " << h.available_mib
            << " MiB available, " << h.cpus << " CPUs, " << h.cpu_mhz << " MHz\n"
            << "pressure (some/full, % of the last 10 s): memory " << cell(h.memory_pressure_some) << '/'
            << cell(h.memory_pressure_full) << ", cpu " << cell(h.cpu_pressure_some) << "\n\n";
  std::cout << std::left << std::setw(16) << "VM" << std::right << std::setw(8) << "memory" << std::setw(8) << "vcpus"
            << std::setw(9) << "plugged" << std::setw(11) << "pluggable" << std::setw(11) << "available"
            << std::setw(8) << "rss" << std::setw(11) << "wants MiB" << std::setw(11) << "wants MHz" << '\n';
  for (std::size_t i = 0; i < r.vms.size(); ++i) {
    const auto& v = r.vms[i];
    std::cout << std::left << std::setw(16) << v.name << std::right << std::setw(8) << v.memory_mib << std::setw(8)
              << v.vcpus << std::setw(9) << v.plugged_mib << std::setw(11) << v.pluggable_mib << std::setw(11)
              << cell(v.guest_available_mib) << std::setw(8) << cell(v.rss_mib) << std::setw(11)
              << demand[i].memory_mib << std::setw(11) << demand[i].cpu_mhz << '\n';
  }
  if (r.vms.empty()) std::cout << "(no VMs)\n";
  for (std::size_t i = 0; i < r.vms.size(); ++i) std::cout << r.vms[i].name << ": " << demand[i].reason << '\n';
}

}  // namespace

Expected<Inspection> inspect_node(const PlatformFlags& flags, const std::string& scenario, const std::string& host,
                                  double interval_s) {
  auto node = open_platform(flags, scenario, host);
  if (!node) return node.error();
  Inspection in;
  in.backend = std::string((*node)->backend());
  platform::DemandEstimator estimator;
  for (int round = 0; round < (interval_s > 0 ? 2 : 1); ++round) {
    if (round > 0) std::this_thread::sleep_for(std::chrono::duration<double>(interval_s));
    auto r = (*node)->read();
    if (!r) {
      std::string why = r.error().message;
      if (why.rfind(in.backend + ": ", 0) != 0) why = in.backend + ": " + why;
      return Error{"inspect: " + why, r.error().code};
    }
    in.demand.clear();
    for (const auto& vm : r->vms) in.demand.push_back(estimator.update(vm, r->host, r->at));
    in.reading = std::move(*r);
  }
  return in;
}

nlohmann::ordered_json inspection_json(const Inspection& in) {
  nlohmann::ordered_json out{{"backend", in.backend}, {"host", host_json(in.reading.host)}};
  out["vms"] = nlohmann::ordered_json::array();
  for (std::size_t i = 0; i < in.reading.vms.size(); ++i)
    out["vms"].push_back(vm_json(in.reading.vms[i], in.demand[i]));
  return out;
}

Action add_inspect(CLI::App& app) {
  auto f = std::make_shared<InspectFlags>();
  auto* cmd = app.add_subcommand(
      "inspect",
      "Print what memlend sees on this node through its platform: the host's capacity, free memory and pressure; "
      "each VM with its memory, plugged lent memory, guest statistics, CPU, and the demand memlend infers from "
      "them, with the reason. Reads the platform twice, --interval apart, and changes nothing.");
  add_platform_flags(*cmd, f->platform);
  cmd->add_option("--scenario", f->scenario, "sim: the scenario whose host to show")->type_name("FILE");
  cmd->add_option("--host", f->host, "sim: the NAME of that host");
  cmd->add_option("--interval", f->interval, "Time between the two readings, e.g. 1s (0: one reading)")
      ->capture_default_str();
  cmd->add_flag("--json", f->json, "Print one JSON document instead of tables");
  add_log_flags(cmd, f->log, "warn");
  return with_config_file(cmd, [f] {
    setup_logging(f->log);
    auto interval = parse_duration(f->interval);
    if (!interval || *interval < 0 || *interval > 3600)
      return bad_input("--interval: '" + f->interval + "' is not a duration of at most an hour");
    auto in = inspect_node(f->platform, f->scenario, f->host, *interval);
    if (!in) return bad_input(attribute_to_config_file(in.error().message));
    if (f->json)
      std::cout << inspection_json(*in).dump(2) << '\n';
    else
      print_text(*in);
    return exit_ok;
  });
}

}  // namespace memlend::cli
