#include "cli/store_rows.hpp"

#include "cli/config_file.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <set>

namespace memlend::cli {

namespace {

// Columns that are 0/1 in SQL and true/false in JSON.
const std::set<std::string> flags{"up", "rdma", "data_path"};

}  // namespace

Expected<void> find_installed_store(CLI::App& cmd, std::string& db) {
  // The package's paths (packaging/CMakeLists.txt, memlend.service).
  static const std::string installed_config = "/etc/memlend/memlend.conf";
  static const std::string state_dir = "/var/lib/memlend";
  const CLI::Option* given_db = cmd.get_option_no_throw("--db");
  const CLI::Option* given_config = cmd.get_option_no_throw("--config");
  if ((given_db && given_db->count() > 0) || (given_config && given_config->count() > 0)) return {};
  if (::access(installed_config.c_str(), F_OK) != 0) return {};
  std::map<std::string, int> applied;
  if (auto bad = apply_config_file(cmd, installed_config, &applied)) return *bad;
  // The service runs in its state directory: a relative path, or none, is there.
  if (!applied.count("db")) db = store::default_db_path;
  if (db.empty() || db.front() != '/') db = state_dir + "/" + db;
  return {};
}

Expected<std::unique_ptr<store::Store>> open_store_for_reading(const std::string& db) {
  store::set_log_sink([](store::LogLevel, const std::string&) {});
  store::Options options;
  options.access = store::Access::read_only;
  return store::Store::open(db, options);
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
    for (std::size_t i = 0; i < t.columns.size(); ++i) o[t.columns[i]] = value_json(t.columns[i], row[i]);
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
