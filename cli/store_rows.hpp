// What `memlend state`, `memlend why` and `memlend support-bundle` share: the store opened as support
// tooling opens it, and a support view's rows as JSON or as table cells.
#pragma once

#include "persistence/store.hpp"

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>

namespace memlend::cli {

// The package's paths (packaging/CMakeLists.txt, memlend.service).
inline constexpr const char* installed_config = "/etc/memlend/memlend.conf";
inline constexpr const char* installed_state_dir = "/var/lib/memlend";

// The store the service opens for the installed config's `db` value (empty:
// none set): the service runs in its state directory, so a relative path is there.
std::string installed_db_path(std::string db);

// Where the store is when `cmd` was given neither --db nor --config: on a
// node with memlend installed, what the installed config says, else the
// package's state directory, so that support's first `memlend state` needs no
// flags; elsewhere memlend.db in the working directory, as before. Sets `db`
// (the --db option's variable); an installed config that cannot be read is
// an error.
Expected<void> find_installed_store(CLI::App& cmd, std::string& db);

// Read-only, without a lock and without SQLite's own log (the one line of a
// refusal says it all): works while the controller runs, changes nothing.
Expected<std::unique_ptr<store::Store>> open_store_for_reading(const std::string& db);

// The views `memlend state` shows, read from one store.
struct StateViews {
  store::Table controller, hosts, vms, leases, mirrors, recommendations, events, decisions;
};
Expected<StateViews> read_state_views(const store::Store& s);
// `memlend state --json`'s document, which a support bundle holds too: each
// VM with its last decision, and no access to the data path.
nlohmann::ordered_json state_json(const std::string& path, const StateViews& v);

// A view's value as JSON (0/1 flag columns as true/false) and as a cell of a
// printed table ("-" for null).
nlohmann::ordered_json value_json(const std::string& column, const store::Value& v);
std::string cell(const std::string& column, const store::Value& v);
// Each row an object with the view's columns, but a lease's datapath_key:
// a file of schema version 1, read as it is, still has it in v_leases, and
// there it may hold the lease's secret.
nlohmann::ordered_json rows_json(const store::Table& t);
// The column's index; t.columns.size() when it has none by that name.
std::size_t column_index(const store::Table& t, const std::string& name);

}  // namespace memlend::cli
