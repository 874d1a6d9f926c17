#include "cli/store_rows.hpp"

#include "cli/config_file.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

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

Expected<void> find_installed_store(CLI::App& cmd, std::string& db) {
  const CLI::Option* given_db = cmd.get_option_no_throw("--db");
  const CLI::Option* given_config = cmd.get_option_no_throw("--config");
  if ((given_db && given_db->count() > 0) || (given_config && given_config->count() > 0)) return {};
  if (::access(installed_config, F_OK) != 0) return {};
  std::map<std::string, int> applied;
  if (auto bad = apply_config_file(cmd, installed_config, &applied)) return *bad;
  db = installed_db_path(applied.count("db") ? db : "");
  return {};
}

std::string installed_db_path(std::string db) {
  if (db.empty()) db = store::default_db_path;
  if (db.front() != '/') db = std::string(installed_state_dir) + "/" + db;
  return db;
}

Expected<std::unique_ptr<store::Store>> open_store_for_reading(const std::string& db) {
  store::set_log_sink([](store::LogLevel, const std::string&) {});
  store::Options options;
  options.access = store::Access::read_only;
  return store::Store::open(db, options);
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
