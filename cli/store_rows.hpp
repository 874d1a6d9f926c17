// What `memlend state`, `memlend why` and `memlend support-bundle` share: the store opened as support
// tooling opens it, and a support view's rows as JSON or as table cells.
#pragma once

#include "persistence/store.hpp"
#include "replica/tls.hpp"

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <vector>

namespace memlend::cli {

// The package's paths (packaging/CMakeLists.txt, memlend.service).
inline constexpr const char* installed_config = "/etc/memlend/memlend.conf";
inline constexpr const char* installed_state_dir = "/var/lib/memlend";

// The store the service opens for the installed config's `db` value (empty:
// none set): the service runs in its state directory, so a relative path is there.
std::string installed_db_path(std::string db);

// Where support tooling reads the store: a file, or the store a dqlite
// cluster keeps (memlend run --replica-*), through any of its members.
struct StoreSource {
  std::string db = store::default_db_path;
  std::vector<std::string> members;  // HOST:PORT each; empty: the file
  // The cluster's members speak TLS (replica/tls.hpp): its CA, and this
  // node's certificate and key, as memlend run has them.
  std::string tls_ca, tls_cert, tls_key;
  // For output: the file, or "the cluster through HOST:PORT,...".
  std::string name() const;
  // The TLS files loaded; an error names the flag that is missing or wrong.
  Expected<std::shared_ptr<const replica::Tls>> tls() const;
};

// Adds --db FILE, --replica HOST:PORT[,...] and the --tls-* files to `cmd`.
void add_store_options(CLI::App& cmd, const std::shared_ptr<StoreSource>& source);
// Adds the --tls-* files alone, which a config's keys of the same names set.
void add_tls_options(CLI::App& cmd, const std::shared_ptr<StoreSource>& source);

// Where the store is when `cmd` was not told on its command line: a config
// (--config, else on a node with memlend installed the installed one) that
// names this node's member of a cluster (replica-address, replica-join)
// means the cluster's store; else the config's `db`, the installed one
// relative to the package's state directory, so that support's first
// `memlend state` needs no flags; elsewhere memlend.db in the working
// directory, as before. With --replica on the command line, the installed
// config still gives the TLS files to reach the members with. A config that
// cannot be read, or a member that is not HOST:PORT, is an error.
Expected<void> find_installed_store(CLI::App& cmd, StoreSource& source);

// "HOST:PORT,HOST:PORT" as members; an error names `what` (a flag, a key).
Expected<std::vector<std::string>> parse_members(const std::string& list, const std::string& what);
// The members as such a list again.
std::string members_list(const std::vector<std::string>& members);

// The members a config names for its node's member of a cluster: its own
// replica-address first, then its replica-join. None when it names none.
Expected<std::vector<std::string>> replica_members_in(const std::string& config);

// Read-only, without a lock and without SQLite's own log (the one line of a
// refusal says it all): works while the controller runs, changes nothing. A
// cluster's store is read through its leader, found through the members.
Expected<std::unique_ptr<store::Store>> open_store_for_reading(const StoreSource& source);

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
