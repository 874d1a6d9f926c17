// Starting `memlend run` on a store: a fresh database records the scenario's
// starting state; a database that already holds this scenario's state gives
// it back (the leases alive, the VMs where they ran, what they were
// recommended, the scenario clock), and the simulated platform is rebuilt to
// match it. A store never holds two scenarios: another scenario's database
// is refused, and a demo database whose run already ended is moved aside.
#pragma once

#include "actors/planner.hpp"
#include "firmware_hooks/platform.hpp"
#include "persistence/store.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace memlend {

struct Resumed {
  std::shared_ptr<store::Store> store;
  policy::Scenario scenario;  // as the actors start it
  StartState start;
  double origin_s = 0;        // the scenario clock to resume at
  std::shared_ptr<platform::Platform> platform;
  std::vector<std::string> notes;  // for the console: what was resumed, what was moved aside
  std::string fingerprint;
  bool resumed = false;  // false: a fresh start
};

struct ResumeOptions {
  std::string db;
  // Set: the store is the one a dqlite cluster keeps, and db is only the
  // single-node store to import into it when no controller has written to
  // it yet (store::Replica::import_file), if import_db.
  std::optional<store::Replica> replica;
  bool import_db = false;
  std::string scenario_text;  // what the fingerprint is taken of
  std::optional<double> until_s;
  // The data path lived in the controller's own process (single-process
  // runs): its grants died with it and are made again.
  bool data_path_in_process = true;
  std::string datastore;  // where mirror files go, for their records
  std::function<void(double seconds)> on_commit;  // each group commit's duration; may be empty
  // Event retention (store::Options): days and rows of events kept, 0 for no limit.
  std::uint32_t events_keep_days = 30;
  std::uint64_t events_keep_rows = 1000000;
};

// Every error names the database and what to do; nothing is changed then.
Expected<Resumed> open_run(const policy::Scenario& scenario, const ResumeOptions& options);

}  // namespace memlend
