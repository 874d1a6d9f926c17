#include "firmware_hooks/scenario.hpp"

#include "actors/policy/operator_input.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_map>
#include <vector>

namespace memlend::platform {

using nlohmann::json;
using namespace memlend::policy;

namespace {

// Thrown inside this file only; parse_scenario turns it into an Error.
struct Bad {
  std::string where;
  std::string what;
};

std::string kind_of(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a fraction";
    default: return "a number";
  }
}

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

// Reads the keys of one object, refusing any it was not told about.
class Fields {
 public:
  Fields(const json& j, std::string path, std::initializer_list<const char*> allowed)
      : j_(j), path_(std::move(path)) {
    if (!j.is_object()) throw Bad{path_, "must be an object, got " + kind_of(j)};
    for (const auto& item : j.items()) {
      const std::string& key = item.key();
      if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return key == a; }))
        throw Bad{join(path_, key), "unknown key"};
    }
  }

  bool has(const char* key) const { return j_.contains(key); }
  const json& at(const char* key) const { return j_.at(key); }
  std::string where(const char* key) const { return join(path_, key); }

  std::int64_t integer(const char* key, std::int64_t lo, std::int64_t hi,
                       std::optional<std::int64_t> fallback = std::nullopt) const {
    if (!has(key)) {
      if (fallback) return *fallback;
      throw Bad{where(key), "missing (required)"};
    }
    const json& v = at(key);
    if (!v.is_number_integer() && !v.is_number_unsigned())
      throw Bad{where(key), "must be an integer, got " + kind_of(v)};
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(hi))
      throw Bad{where(key), "must be at most " + std::to_string(hi) + ", got " + v.dump()};
    std::int64_t x = v.get<std::int64_t>();
    if (x < lo || x > hi)
      throw Bad{where(key), "must be between " + std::to_string(lo) + " and " + std::to_string(hi) +
                                ", got " + std::to_string(x)};
    return x;
  }

  double seconds(const char* key) const {
    if (!has(key)) throw Bad{where(key), "missing (required)"};
    const json& v = at(key);
    if (!v.is_number()) throw Bad{where(key), "must be a number of seconds, got " + kind_of(v)};
    double x = v.get<double>();
    if (!std::isfinite(x) || x < 0 || x > static_cast<double>(max_seconds))
      throw Bad{where(key), "must be between 0 and " + std::to_string(max_seconds) + " seconds, got " + v.dump()};
    return x;
  }

  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = at(key);
    if (!v.is_boolean()) throw Bad{where(key), "must be true or false, got " + kind_of(v)};
    return v.get<bool>();
  }

  std::string name(const char* key, bool required = true) const {
    if (!has(key)) {
      if (required) throw Bad{where(key), "missing (required)"};
      return {};
    }
    const json& v = at(key);
    if (!v.is_string()) throw Bad{where(key), "must be a string, got " + kind_of(v)};
    std::string s = v.get<std::string>();
    if (required && s.empty()) throw Bad{where(key), "must not be empty"};
    if (s.size() > 128) throw Bad{where(key), "is longer than 128 characters"};
    // Names end up in logs, metric labels and file names.
    if (std::any_of(s.begin(), s.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f || c == '/'; }))
      throw Bad{where(key), "must not hold control characters or '/'"};
    return s;
  }

  template <class E>
  E choice(const char* key, E fallback, std::optional<E> (*parse)(std::string_view), const char* options) const {
    if (!has(key)) return fallback;
    const json& v = at(key);
    if (!v.is_string()) throw Bad{where(key), std::string("must be one of ") + options + ", got " + kind_of(v)};
    auto e = parse(v.get<std::string>());
    if (!e) throw Bad{where(key), "unknown value \"" + v.get<std::string>() + "\" (one of " + options + ")"};
    return *e;
  }

 private:
  const json& j_;
  std::string path_;
};

const json& array_at(const Fields& f, const char* key) {
  const json& a = f.at(key);
  if (!a.is_array()) throw Bad{f.where(key), "must be an array, got " + kind_of(a)};
  return a;
}

bool power_of_two(std::int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

Settings parse_settings(const json& j) {
  Fields f(j, "settings",
           {"page_size_kib", "rdma_block_kib", "buffer_blocks", "placement", "order", "donors",
            "migrate_after_s", "detect_samples", "sample_period_s"});
  Settings s;
  s.page_size_kib = f.integer("page_size_kib", 1, 1 << 20, s.page_size_kib);
  if (!power_of_two(s.page_size_kib)) throw Bad{"settings.page_size_kib", "must be a power of two"};
  s.rdma_block_kib = f.integer("rdma_block_kib", 1, 1 << 20, s.rdma_block_kib);
  if (!power_of_two(s.rdma_block_kib)) throw Bad{"settings.rdma_block_kib", "must be a power of two"};
  s.buffer_blocks = f.integer("buffer_blocks", 1, 4096, s.buffer_blocks);
  if (buffer_kib_per_lease(s) > (std::int64_t{1} << 20))
    throw Bad{"settings.buffer_blocks", "makes a local buffer of " + std::to_string(buffer_kib_per_lease(s)) +
                                            " KiB per lease, more than 1 GiB"};
  s.placement = f.choice("placement", s.placement, parse_heuristic,
                         "first_fit, best_fit, worst_fit, cosine, l2_diff, l2_ratio");
  s.order = f.choice("order", s.order, parse_order, "listed, ffd_prod, ffd_sum");
  s.donors = f.choice("donors", s.donors, parse_donor_mode, "fewest, spread");
  s.migrate_after_s = f.integer("migrate_after_s", 0, max_seconds, s.migrate_after_s);
  s.detect_samples = f.integer("detect_samples", 1, 10000, s.detect_samples);
  s.sample_period_s = f.integer("sample_period_s", 1, 86400, s.sample_period_s);
  return s;
}

Scenario parse(const json& root) {
  Fields top(root, "", {"settings", "hosts", "vms", "events"});
  Scenario sc;
  if (top.has("settings")) sc.settings = parse_settings(top.at("settings"));

  if (!top.has("hosts")) throw Bad{"hosts", "missing (required)"};
  const json& hosts = array_at(top, "hosts");
  if (hosts.empty()) throw Bad{"hosts", "must list at least one host"};
  std::unordered_map<std::string, HostId> host_ids;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    std::string p = "hosts[" + std::to_string(i) + "]";
    Fields f(hosts[i], p, {"name", "memory_mib", "cpu_mhz", "rdma", "data_path", "up", "reserved_mib", "fabric"});
    Host h;
    h.name = f.name("name");
    if (!host_ids.emplace(h.name, static_cast<HostId>(i)).second)
      throw Bad{p + ".name", "\"" + h.name + "\" names two hosts"};
    h.memory_mib = f.integer("memory_mib", 1, max_mib);
    h.cpu_mhz = f.integer("cpu_mhz", 1, max_mhz);
    h.rdma = f.boolean("rdma", true);
    h.data_path = f.boolean("data_path", true);
    h.up = f.boolean("up", true);
    h.reserved_mib = f.integer("reserved_mib", 0, max_mib, 0);
    if (h.reserved_mib > h.memory_mib)
      throw Bad{p + ".reserved_mib", "is more than the host's memory_mib (" + std::to_string(h.memory_mib) + ")"};
    h.fabric = f.name("fabric", false);
    sc.hosts.push_back(std::move(h));
  }

  std::unordered_map<std::string, VmId> vm_ids;
  std::vector<std::int64_t> lent(sc.hosts.size(), 0);
  if (top.has("vms")) {
    const json& vms = array_at(top, "vms");
    for (std::size_t i = 0; i < vms.size(); ++i) {
      std::string p = "vms[" + std::to_string(i) + "]";
      Fields f(vms[i], p, {"name", "host", "memory_mib", "cpu_mhz", "remote", "remote_for_s", "donors"});
      Vm v;
      v.name = f.name("name");
      if (!vm_ids.emplace(v.name, static_cast<VmId>(i)).second)
        throw Bad{p + ".name", "\"" + v.name + "\" names two VMs"};
      std::string host = f.name("host");
      auto h = host_ids.find(host);
      if (h == host_ids.end()) throw Bad{p + ".host", "unknown host \"" + host + "\""};
      v.host = h->second;
      v.memory_mib = f.integer("memory_mib", 1, max_mib);
      v.cpu_mhz = f.integer("cpu_mhz", 0, max_mhz);
      v.remote_for_s = f.integer("remote_for_s", 0, max_seconds, 0);
      if (f.has("donors"))
        v.donors = f.choice("donors", DonorMode::fewest, parse_donor_mode, "fewest, spread");
      if (f.has("remote")) {
        const json& parts = array_at(f, "remote");
        std::set<HostId> seen;
        std::int64_t total = 0;
        for (std::size_t k = 0; k < parts.size(); ++k) {
          std::string q = p + ".remote[" + std::to_string(k) + "]";
          Fields r(parts[k], q, {"donor", "mib"});
          std::string donor = r.name("donor");
          auto d = host_ids.find(donor);
          if (d == host_ids.end()) throw Bad{q + ".donor", "unknown host \"" + donor + "\""};
          if (d->second == v.host) throw Bad{q + ".donor", "is the VM's own host"};
          // Hosts lend only within their fabric: such a loan cannot exist.
          if (sc.hosts[d->second].fabric != sc.hosts[v.host].fabric)
            throw Bad{q + ".donor", donor + " is in fabric \"" + sc.hosts[d->second].fabric + "\", " +
                                        sc.hosts[v.host].name + " in \"" + sc.hosts[v.host].fabric + "\""};
          if (!seen.insert(d->second).second) throw Bad{q + ".donor", "\"" + donor + "\" lends to this VM twice"};
          std::int64_t mib = r.integer("mib", 1, max_mib);
          total += mib;
          lent[d->second] += mib;
          if (lent[d->second] > sc.hosts[d->second].memory_mib)
            throw Bad{q + ".mib", "makes " + donor + " lend " + std::to_string(lent[d->second]) +
                                      " MiB, more than its memory_mib"};
          v.remote.push_back({d->second, mib});
        }
        if (total > v.memory_mib) throw Bad{p + ".remote", "borrows more than the VM's memory_mib"};
      }
      sc.vms.push_back(std::move(v));
    }
  }

  if (top.has("events")) {
    const json& events = array_at(top, "events");
    for (std::size_t i = 0; i < events.size(); ++i) {
      std::string p = "events[" + std::to_string(i) + "]";
      Fields f(events[i], p, {"at_s", "vm", "host", "memory_mib", "cpu_mhz", "up"});
      Event e;
      e.at_s = f.seconds("at_s");
      if (f.has("vm") == f.has("host")) throw Bad{p, "must name either a \"vm\" or a \"host\""};
      if (f.has("vm")) {
        std::string vm = f.name("vm");
        auto v = vm_ids.find(vm);
        if (v == vm_ids.end()) throw Bad{p + ".vm", "unknown VM \"" + vm + "\""};
        e.vm = v->second;
        if (f.has("up")) throw Bad{p + ".up", "applies to a host, not a VM"};
        if (f.has("memory_mib")) e.memory_mib = f.integer("memory_mib", 1, max_mib);
        if (f.has("cpu_mhz")) e.cpu_mhz = f.integer("cpu_mhz", 0, max_mhz);
        if (!e.memory_mib && !e.cpu_mhz) throw Bad{p, "a VM event must give memory_mib or cpu_mhz"};
      } else {
        std::string host = f.name("host");
        auto h = host_ids.find(host);
        if (h == host_ids.end()) throw Bad{p + ".host", "unknown host \"" + host + "\""};
        e.host = h->second;
        if (f.has("memory_mib") || f.has("cpu_mhz")) throw Bad{p, "a host event gives only \"up\""};
        if (!f.has("up")) throw Bad{p + ".up", "missing (required for a host event)"};
        e.up = f.boolean("up", true);
      }
      sc.events.push_back(e);
    }
    std::stable_sort(sc.events.begin(), sc.events.end(),
                     [](const Event& a, const Event& b) { return a.at_s < b.at_s; });
  }
  return sc;
}

// nlohmann keeps the last of two equal keys; a scenario with both is a
// mistake worth naming, so the parser callback watches for them.
struct DuplicateKey {
  std::string key;
};

Expected<Scenario> parse_scenario_text(std::string_view text, const std::string& origin);

}  // namespace

Expected<Scenario> parse_scenario(std::string_view text, const std::string& origin) {
  auto sc = parse_scenario_text(text, origin);
  if (!sc) return Error{one_line(sc.error().message)};
  return sc;
}

namespace {

Expected<Scenario> parse_scenario_text(std::string_view text, const std::string& origin) {
  std::vector<std::set<std::string>> open;
  auto watch = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start: open.emplace_back(); break;
      case json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open.empty() && !open.back().insert(parsed.get<std::string>()).second)
          throw DuplicateKey{parsed.get<std::string>()};
        break;
      default: break;
    }
    return true;
  };
  json root;
  try {
    root = json::parse(text.begin(), text.end(), watch);
  } catch (const DuplicateKey& d) {
    return Error{origin + ": key \"" + d.key + "\" appears twice in one object"};
  } catch (const json::exception& e) {  // a syntax error, or a number too large for a double (406)
    std::string what = e.what();
    auto cut = what.find("] ");
    if (cut != std::string::npos) what = what.substr(cut + 2);
    return Error{origin + ": not valid JSON: " + what};
  }
  try {
    return parse(root);
  } catch (const Bad& b) {
    return Error{origin + ": " + (b.where.empty() ? std::string("top level") : b.where) + ": " + b.what};
  } catch (const json::exception& e) {
    return Error{origin + ": " + e.what()};
  }
}

}  // namespace

Expected<std::string> read_scenario_file(const std::string& path) {
  return read_input_file(path, "scenario file", max_scenario_bytes);
}

Expected<Scenario> load_scenario(const std::string& path) {
  auto text = read_scenario_file(path);
  if (!text) return text.error();
  return parse_scenario(*text, path);
}

}  // namespace memlend::platform
