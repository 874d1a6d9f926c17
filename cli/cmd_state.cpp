// `memlend state`: what the store holds, for a support engineer. It opens the
// database read-only (it works while the controller runs, and never changes
// the file) and prints the support views of README.md ("Store").
#include "cli/cli.hpp"
#include "cli/store_rows.hpp"
#include "persistence/store.hpp"

#include <algorithm>
#include <iostream>

namespace memlend::cli {

namespace {

using store::Table;
using store::Value;
using store::View;

// An aligned table of the chosen columns; `keep` picks rows.
template <class Keep>
void print_table(std::ostream& out, const std::string& title, const Table& t, const std::vector<std::string>& columns,
                 Keep keep) {
  std::vector<std::size_t> index;
  for (const auto& c : columns)
    if (column_index(t, c) < t.columns.size()) index.push_back(column_index(t, c));
  std::vector<std::vector<std::string>> cells;
  std::vector<std::string> header;
  for (auto i : index) header.push_back(t.columns[i]);
  cells.push_back(header);
  for (const auto& row : t.rows) {
    if (!keep(row)) continue;
    std::vector<std::string> line;
    for (auto i : index) line.push_back(cell(t.columns[i], row[i]));
    cells.push_back(std::move(line));
  }
  out << '\n' << title << " (" << cells.size() - 1 << ")\n";
  if (cells.size() == 1) return;
  std::vector<std::size_t> width(index.size(), 0);
  for (const auto& line : cells)
    for (std::size_t i = 0; i < line.size(); ++i) width[i] = std::max(width[i], line[i].size());
  for (const auto& line : cells) {
    out << ' ';
    for (std::size_t i = 0; i < line.size(); ++i) {
      out << ' ' << line[i];
      if (i + 1 < line.size()) out << std::string(width[i] - line[i].size(), ' ');
    }
    out << '\n';
  }
}

void print_table(std::ostream& out, const std::string& title, const Table& t, const std::vector<std::string>& columns) {
  print_table(out, title, t, columns, [](const std::vector<Value>&) { return true; });
}

int print_text(const std::string& path, const StateViews& v) {
  auto& out = std::cout;
  out << "memlend store " << path;
  if (!v.controller.rows.empty()) {
    const auto& c = v.controller.rows[0];
    out << ": schema version " << cell("", c[column_index(v.controller, "schema_version")]) << ", scenario clock "
        << cell("", c[column_index(v.controller, "clock_s")]) << " s, "
        << cell("", c[column_index(v.controller, "live_leases")]) << " live leases, "
        << cell("", c[column_index(v.controller, "events")]) << " events, last written "
        << cell("", c[column_index(v.controller, "updated_at")]);
    // Schema version 5 on: how many controllers have started on it.
    if (auto e = column_index(v.controller, "epoch"); e < c.size())
      out << ", leadership epoch " << cell("", c[e]);
  }
  out << '\n';
  print_table(out, "hosts (MiB)", v.hosts,
              {"name", "up", "memory_mib", "used_mib", "reserved_mib", "lent_mib", "reserving_mib", "failed_mib",
               "borrowed_mib", "free_mib", "lendable_mib"});
  print_table(out, "VMs (MiB)", v.vms,
              {"name", "host", "demand_mib", "local_mib", "borrowed_mib", "reserving_mib", "from_mirror_mib",
               "short_mib", "mirror_mib", "migrating_to", "recommended_target"});
  std::size_t state = column_index(v.leases, "state");
  auto live = [state](const std::vector<Value>& row) { return cell("", row[state]) != "released"; };
  print_table(out, "leases, not released", v.leases,
              {"id", "vm", "donor", "recipient", "mib", "state", "transport", "epoch", "created_t_s", "updated_t_s"},
              live);
  std::size_t released = static_cast<std::size_t>(
      std::count_if(v.leases.rows.begin(), v.leases.rows.end(), [&](const auto& row) { return !live(row); }));
  if (released) out << "  (" << released << " released leases kept as history: memlend state --json lists them)\n";
  print_table(out, "mirrors", v.mirrors, {"vm", "path", "mib", "watermark_bytes", "state"});
  print_table(out, "recommendations", v.recommendations, {"vm", "target", "reason", "t_s"});
  std::size_t decided = column_index(v.decisions, "last_decision");
  if (decided < v.decisions.columns.size())
    print_table(out, "last decisions", v.decisions, {"vm", "last_decision", "t_s", "reason"},
                [decided](const std::vector<Value>& row) { return !std::holds_alternative<std::monostate>(row[decided]); });
  print_table(out, "recent events", v.events, {"seq", "t_s", "event", "vm", "host", "donor", "mib"});
  return exit_ok;
}

}  // namespace

Action add_state(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "state",
      "Show what the controller's store holds: hosts and what they lend, VMs and their\n"
      "memory, leases, mirrors, recommendations and the latest events. Opens the database\n"
      "read-only: it works while the controller runs and never changes the file; on a\n"
      "cluster it reads the replicated store through the members.");
  auto source = std::make_shared<StoreSource>();
  auto as_json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *as_json,
                "Print one JSON object with the arrays hosts, vms, leases, mirrors, recommendations\n"
                "and recent_events");
  auto export_file = std::make_shared<std::string>();
  cmd->add_option("--export", *export_file,
                  "Write what the store holds to FILE instead, a plain SQLite file with the same views\n"
                  "(sqlite3 opens it as it is); FILE must not exist")
      ->type_name("FILE");
  add_store_options(*cmd, source);
  return [cmd, source, as_json, export_file] {
    if (auto found = find_installed_store(*cmd, *source); !found) return bad_input(found.error().message);
    if (!export_file->empty() && *as_json) return bad_input("--export and --json: choose one");
    auto s = open_store_for_reading(*source);
    if (!s) return bad_input(s.error().message);
    if (!export_file->empty()) {
      if (auto done = (*s)->export_to(*export_file); !done) return bad_input(done.error().message);
      std::cout << "exported " << source->name() << " (schema version " << (*s)->schema_version() << ") to "
                << *export_file << '\n';
      return exit_ok;
    }
    auto v = read_state_views(**s);
    if (!v) return bad_input(v.error().message);
    if (*as_json) {
      std::cout << state_json(source->name(), *v).dump(2) << '\n';
      return exit_ok;
    }
    return print_text(source->name(), *v);
  };
}

}  // namespace memlend::cli
