#include "scenario/scenario.hpp"

#include "policy/operator_input.hpp"

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

// U+202A..U+202E are E2 80 AA..AE in UTF-8, U+2066..U+2069 are E2 81 A6..A9.
bool has_bidi_override(const std::string& s) {
  for (std::size_t i = 0; i + 2 < s.size(); ++i) {
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    if (b(0) != 0xe2) continue;
    if (b(1) == 0x80 && b(2) >= 0xaa && b(2) <= 0xae) return true;
    if (b(1) == 0x81 && b(2) >= 0xa6 && b(2) <= 0xa9) return true;
  }
  return false;
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
        throw Bad{join(path_, clip(key)), "unknown key"};
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
    // A name that reads differently from what it is ("Trojan Source"): in a
    // log or a plan, the override turns the text after it around.
    if (has_bidi_override(s))
      throw Bad{where(key), "must not hold bidirectional override characters (U+202A-U+202E, U+2066-U+2069)"};
    return s;
  }

  template <class E>
  E choice(const char* key, E fallback, std::optional<E> (*parse)(std::string_view), const char* options) const {
    if (!has(key)) return fallback;
    const json& v = at(key);
    if (!v.is_string()) throw Bad{where(key), std::string("must be one of ") + options + ", got " + kind_of(v)};
    auto e = parse(v.get<std::string>());
    if (!e) throw Bad{where(key), "unknown value \"" + clip(v.get<std::string>()) + "\" (one of " + options + ")"};
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
  // A block is what one RDMA READ or WRITE moves: any whole number of 4 KiB
  // pages can be registered and moved, and only then can the buffer rule,
  // lcm(page, block), exceed the larger of the two (2 MiB pages and 768 KiB
  // blocks: 6 MiB). Powers of two below a page stay valid, as before; the
  // data path rounds them up to a page.
  if (!power_of_two(s.rdma_block_kib) && s.rdma_block_kib % 4 != 0)
    throw Bad{"settings.rdma_block_kib", "must be a power of two or a whole number of 4 KiB pages, got " +
                                             std::to_string(s.rdma_block_kib)};
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
  // No hosts: an open cluster's settings, whose hosts are those that join
  // (`run --listen`); what else would run on it is the command's to refuse.
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

// Builds the document as nlohmann's DOM parser would, refusing on the way what
// that parser lets through: a key twice in one object (nlohmann keeps the
// last; a scenario that says something twice is a mistake worth naming), an
// integer beyond 64 bits (nlohmann makes it a double, reported as "a
// fraction"), and nesting deeper than a scenario goes (each level costs
// memory, and the file may be 64 MiB of '['). Linear in the text: a key is
// looked up once, in its own object. (nlohmann's callback parser, used before
// for the duplicate check, rescanned the enclosing array at the end of each
// object: quadratic in the hosts.)
class Builder {
 public:
  explicit Builder(json& root) : root_(root) {}

  bool null() { return put(nullptr); }
  bool boolean(bool b) { return put(b); }
  bool number_integer(json::number_integer_t x) { return put(x); }
  bool number_unsigned(json::number_unsigned_t x) { return put(x); }
  bool number_float(json::number_float_t x, const json::string_t& text) {
    if (text.find_first_of(".eE") == std::string::npos)
      return refuse(next_path(), clip(text) + " is an integer beyond 64 bits");
    return put(x);
  }
  bool string(json::string_t& s) { return put(std::move(s)); }
  bool binary(json::binary_t&) { return refuse(next_path(), "binary data"); }  // not in JSON text

  bool start_object(std::size_t) { return open(json::value_t::object); }
  bool start_array(std::size_t) { return open(json::value_t::array); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(json::string_t& k) {
    auto [it, fresh] = open_.back().value->get_ref<json::object_t&>().try_emplace(std::move(k));
    if (!fresh) {
      error_ = "key \"" + clip(it->first) + "\" appears twice in one object";
      return false;
    }
    open_.back().key = &it->first;  // a map's keys stay where they are
    slot_ = &it->second;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 7: ...;
    // last read: '<the token>'": the token may be megabytes of string.
    std::string what = e.what();
    auto cut = what.find("] ");
    if (cut != std::string::npos) what = what.substr(cut + 2);
    const std::string last = "; last read: '";
    auto token = what.find(last);
    if (token != std::string::npos && what.size() > token + last.size() + 1)
      what = what.substr(0, token + last.size()) + clip(what.substr(token + last.size(), what.size() - token - last.size() - 1)) + "'";
    error_ = "not valid JSON: " + clip(what, 300);
    return false;
  }

  // Why parsing stopped, after "ORIGIN: ".
  const std::string& error() const { return error_; }

 private:
  // Five levels hold every key a scenario has (top, vms, a VM, its remote, a
  // loan); the margin is for the messages about keys that are not there.
  static constexpr std::size_t max_depth = 16;

  struct Open {
    json* value;                        // the container being filled
    const std::string* key = nullptr;  // in an object, the key of the value being parsed
  };

  // Where the next value goes: the root, the end of the innermost array, or
  // the slot of the key just read. Only the innermost container grows, so
  // the pointers to the open ones stay valid.
  json* next_slot() {
    if (open_.empty()) return &root_;
    json& top = *open_.back().value;
    if (top.is_array()) {
      top.get_ref<json::array_t&>().emplace_back();
      return &top.back();
    }
    return slot_;
  }

  template <class V>
  bool put(V&& v) {
    *next_slot() = json(std::forward<V>(v));
    return true;
  }

  bool open(json::value_t kind) {
    if (open_.size() >= max_depth)
      return refuse(next_path(), "nested deeper than " + std::to_string(max_depth) + " levels");
    json* slot = next_slot();
    *slot = json(kind);
    open_.push_back({slot});
    return true;
  }

  bool close() {
    open_.pop_back();
    return true;
  }

  // The path of the value about to be parsed, as the checks write it
  // ("hosts[3].memory_mib"); only built for a message.
  std::string next_path() const {
    std::string path;
    for (std::size_t i = 0; i < open_.size(); ++i) {
      const json& c = *open_[i].value;
      bool innermost = i + 1 == open_.size();
      if (c.is_array())
        path += "[" + std::to_string(innermost ? c.size() : c.size() - 1) + "]";
      else if (open_[i].key)
        path = join(path, clip(*open_[i].key));
    }
    return path;
  }

  bool refuse(const std::string& path, std::string what) {
    error_ = (path.empty() ? std::string("top level") : path) + ": " + std::move(what);
    return false;
  }

  json& root_;
  std::vector<Open> open_;
  json* slot_ = nullptr;
  std::string error_;
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
  // nlohmann's lexer takes a NUL for the end of the input and ignores what
  // follows it; a scenario is text, and a NUL in it is damage.
  if (auto nul = text.find('\0'); nul != std::string_view::npos)
    return Error{origin + ": not valid JSON: a NUL byte at offset " + std::to_string(nul)};
  json root;
  Builder builder(root);
  if (!json::sax_parse(text.begin(), text.end(), &builder, json::input_format_t::json, true))
    return Error{origin + ": " + builder.error()};
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
