#include "cli/store_rows.hpp"

#include "cli/cluster_flags.hpp"
#include "cli/config_file.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

namespace memlend::cli {

namespace {

// Columns that are 0/1 in SQL and true/false in JSON.
const std::set<std::string> flags{"up", "rdma", "data_path"};
// Columns no output shows (DESIGN.md, "Trust").
const std::set<std::string> hidden{"datapath_key"};

// Each VM's object gains its last decision (v_vm_decisions), or null: a key
// added to the vms rows, whose own columns stay as they are.
nlohmann::ordered_json with_last_decisions(const store::Table& decisions, nlohmann::ordered_json vms) {
  std::map<std::int64_t, nlohmann::ordered_json> last;
  for (auto& d : rows_json(decisions)) {
    if (d["last_decision"].is_null()) continue;
    last[d["id"].get<std::int64_t>()] = {{"event", d["last_decision"]}, {"reason", d["reason"]}, {"t_s", d["t_s"]},
                                         {"seq", d["seq"]},          {"recorded_at", d["recorded_at"]}};
  }
  for (auto& vm : vms) {
    auto it = vm["id"].is_number_integer() ? last.find(vm["id"].get<std::int64_t>()) : last.end();
    vm["last_decision"] = it == last.end() ? nlohmann::ordered_json(nullptr) : it->second;
  }
  return vms;
}

}  // namespace

std::string StoreSource::name() const { return members.empty() ? db : "the cluster through " + members_list(members); }

std::string members_list(const std::vector<std::string>& members) {
  std::string list;
  for (const auto& m : members) list += (list.empty() ? "" : ",") + m;
  return list;
}

Expected<std::vector<std::string>> parse_members(const std::string& list, const std::string& what) {
  std::vector<std::string> out;
  std::stringstream items(list);
  for (std::string item; std::getline(items, item, ',');) {
    if (!parse_address(item) || parse_address(item)->second == 0)
      return Error{what + ": \"" + item + "\" is not HOST:PORT", ErrorCode::invalid_input};
    out.push_back(item);
  }
  if (out.empty()) return Error{what + ": no member given", ErrorCode::invalid_input};
  return out;
}

namespace {

bool given_on_command_line(const CLI::App& cmd, const std::string& name) {
  const CLI::Option* o = cmd.get_option_no_throw(name);
  return o && o->count() > 0;
}

}  // namespace

Expected<std::vector<std::string>> replica_members_in(const std::string& path) {
  auto lines = read_config_lines(path);
  if (!lines) return lines.error();
  std::string address, join;
  int address_line = 0, join_line = 0;
  for (const ConfigLine& l : *lines) {
    if (l.key == "replica-address") address = l.value, address_line = l.line;
    if (l.key == "replica-join") join = l.value, join_line = l.line;
  }
  if (address.empty()) return std::vector<std::string>{};
  auto out = parse_members(address, path + ":" + std::to_string(address_line) + ": key replica-address");
  if (!out) return out.error();
  if (!join.empty()) {
    auto more = parse_members(join, path + ":" + std::to_string(join_line) + ": key replica-join");
    if (!more) return more.error();
    for (auto& m : *more)
      if (std::find(out->begin(), out->end(), m) == out->end()) out->push_back(std::move(m));
  }
  return out;
}

void add_store_options(CLI::App& cmd, const std::shared_ptr<StoreSource>& source) {
  cmd.add_option("--db", source->db,
                 "The controller's database (default: the installed config's, else memlend.db in the working "
                 "directory)")
      ->type_name("FILE");
  cmd.add_option_function<std::string>(
         "--replica",
         [source](const std::string& list) {
           auto m = parse_members(list, "--replica");
           if (!m) throw CLI::ValidationError(m.error().message);
           source->members = std::move(*m);
         },
         "Read the store a cluster keeps (memlend run --replica-*) instead of a file, through\n"
         "these members of it (any one that answers will do); the default on a node whose\n"
         "config names its member")
      ->type_name("HOST:PORT[,...]")
      ->excludes("--db");
  add_tls_options(cmd, source);
}

void add_tls_options(CLI::App& cmd, const std::shared_ptr<StoreSource>& source) {
  cmd.add_option("--tls-ca", source->tls_ca, "With a cluster's store: the cluster's CA certificate (PEM)")
      ->type_name("FILE");
  cmd.add_option("--tls-cert", source->tls_cert,
                 "With a cluster's store: this node's certificate (PEM), which the CA signed")
      ->type_name("FILE");
  cmd.add_option("--tls-key", source->tls_key, "With a cluster's store: this node's private key (PEM)")
      ->type_name("FILE");
}

Expected<std::shared_ptr<const replica::Tls>> StoreSource::tls() const {
  for (auto [flag, path] : {std::pair<const char*, const std::string*>{"--tls-ca", &tls_ca},
                            {"--tls-cert", &tls_cert},
                            {"--tls-key", &tls_key}})
    if (path->empty())
      return Error{std::string(flag) + ": needed to read a cluster's store, whose members speak TLS (or a config " +
                       "that names it)",
                   ErrorCode::invalid_input};
  return replica::Tls::load(tls_ca, tls_cert, tls_key);
}

Expected<void> find_installed_store(CLI::App& cmd, StoreSource& source) {
  const bool has_config = given_on_command_line(cmd, "--config");
  if (given_on_command_line(cmd, "--replica")) {
    // Other members of this node's cluster: its installed config still
    // holds the TLS files to reach them with.
    if (!has_config && ::access(installed_config, F_OK) == 0)
      if (auto bad = apply_config_file(cmd, installed_config)) return *bad;
    return {};
  }
  // With --config, with_config_file has set --db from the file already.
  const bool db_from_file = has_config && applied_file_keys().count("db");
  if (given_on_command_line(cmd, "--db") && !db_from_file) return {};
  std::string config;
  if (has_config) {
    config = cmd.get_option("--config")->as<std::string>();
  } else if (::access(installed_config, F_OK) == 0) {
    config = installed_config;
    std::map<std::string, int> applied;
    if (auto bad = apply_config_file(cmd, installed_config, &applied)) return *bad;
    source.db = installed_db_path(applied.count("db") ? source.db : "");
  }
  if (config.empty()) return {};
  auto members = replica_members_in(config);
  if (!members) return members.error();
  source.members = std::move(*members);
  return {};
}

std::string installed_db_path(std::string db) {
  if (db.empty()) db = store::default_db_path;
  if (db.front() != '/') db = std::string(installed_state_dir) + "/" + db;
  return db;
}

Expected<std::unique_ptr<store::Store>> open_store_for_reading(const StoreSource& source) {
  store::set_log_sink([](store::LogLevel, const std::string&) {});
  store::Options options;
  options.access = store::Access::read_only;
  if (source.members.empty()) return store::Store::open(source.db, options);
  store::Replica where;
  where.members = source.members;
  auto tls = source.tls();
  if (!tls) return tls.error();
  where.tls = *tls;
  return store::Store::open_replicated(where, options);
}

Expected<StateViews> read_state_views(const store::Store& s) {
  using store::View;
  StateViews v;
  std::pair<View, store::Table*> wanted[] = {
      {View::controller, &v.controller}, {View::hosts, &v.hosts},     {View::vms, &v.vms},
      {View::leases, &v.leases},         {View::mirrors, &v.mirrors}, {View::recommendations, &v.recommendations},
      {View::recent_events, &v.events}};
  for (auto& [view, table] : wanted) {
    auto t = s.read(view);
    if (!t) return t.error();
    *table = std::move(*t);
  }
  // A file the controller has not migrated yet keeps no decisions.
  if (s.schema_version() >= 4) {
    auto t = s.read(View::vm_decisions);
    if (!t) return t.error();
    v.decisions = std::move(*t);
  }
  return v;
}

nlohmann::ordered_json state_json(const std::string& path, const StateViews& v) {
  nlohmann::ordered_json j;
  j["database"] = path;
  auto controller = rows_json(v.controller);
  j["controller"] = controller.empty() ? nlohmann::ordered_json(nullptr) : controller[0];
  j["hosts"] = rows_json(v.hosts);
  j["vms"] = with_last_decisions(v.decisions, rows_json(v.vms));
  j["leases"] = rows_json(v.leases);
  j["mirrors"] = rows_json(v.mirrors);
  j["recommendations"] = rows_json(v.recommendations);
  j["recent_events"] = rows_json(v.events);
  return j;
}

nlohmann::ordered_json value_json(const std::string& column, const store::Value& v) {
  if (std::holds_alternative<std::monostate>(v)) return nullptr;
  if (const auto* i = std::get_if<std::int64_t>(&v)) {
    if (flags.count(column)) return *i != 0;
    return *i;
  }
  if (const auto* d = std::get_if<double>(&v)) return *d;
  return std::get<std::string>(v);
}

nlohmann::ordered_json rows_json(const store::Table& t) {
  auto out = nlohmann::ordered_json::array();
  for (const auto& row : t.rows) {
    nlohmann::ordered_json o;
    for (std::size_t i = 0; i < t.columns.size(); ++i)
      if (!hidden.count(t.columns[i])) o[t.columns[i]] = value_json(t.columns[i], row[i]);
    out.push_back(std::move(o));
  }
  return out;
}

std::string cell(const std::string& column, const store::Value& v) {
  if (std::holds_alternative<std::monostate>(v)) return "-";
  if (const auto* i = std::get_if<std::int64_t>(&v)) {
    if (flags.count(column)) return *i ? "yes" : "no";
    return std::to_string(*i);
  }
  if (const auto* d = std::get_if<double>(&v)) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", *d);
    return buf;
  }
  return std::get<std::string>(v);
}

std::size_t column_index(const store::Table& t, const std::string& name) {
  return static_cast<std::size_t>(std::find(t.columns.begin(), t.columns.end(), name) - t.columns.begin());
}

}  // namespace memlend::cli
