// `memlend why VM`: the decisions the controller made for one VM, newest
// first, each with the sentence that explains it, from the store. Opens the
// database as `memlend state` does: read-only, while the controller runs.
#include "cli/cli.hpp"
#include "cli/store_rows.hpp"
#include "persistence/store.hpp"

#include <iostream>

namespace memlend::cli {

namespace {

struct WhyFlags {
  std::string vm;
  std::shared_ptr<StoreSource> source = std::make_shared<StoreSource>();
  bool json = false;
  std::size_t limit = 20;
};

constexpr std::size_t most_limit = 1000000;

int print_text(const WhyFlags& f, const store::Table& t) {
  auto at = [&](const std::vector<store::Value>& row, const char* column) {
    std::size_t i = column_index(t, column);
    return i < t.columns.size() ? cell(column, row[i]) : std::string("-");
  };
  auto& out = std::cout;
  if (t.rows.empty()) {
    out << f.vm << ": no decisions recorded in " << f.source->name() << '\n';
    return exit_ok;
  }
  out << f.vm << ": " << t.rows.size() << (t.rows.size() == f.limit ? " latest" : "") << " decision"
      << (t.rows.size() == 1 ? "" : "s") << " in " << f.source->name() << ", newest first\n";
  for (const auto& row : t.rows) {
    out << "\n  #" << at(row, "seq") << "  t=" << at(row, "t_s") << "s  " << at(row, "recorded_at") << "  "
        << at(row, "event");
    for (const char* c : {"host", "donor", "mib"})
      if (at(row, c) != "-") out << "  " << c << '=' << at(row, c);
    out << "\n    " << at(row, "reason") << '\n';
  }
  return exit_ok;
}

}  // namespace

Action add_why(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "why",
      "Show why: the decisions the controller made for one VM, newest first, each\n"
      "with its reason (lent memory, moved it, recommended a move, could not help).\n"
      "Opens the database read-only: it works while the controller runs; on a cluster\n"
      "it reads the replicated store through the members.");
  auto f = std::make_shared<WhyFlags>();
  cmd->add_option("VM", f->vm, "The VM's name, as in the scenario")->required();
  add_store_options(*cmd, f->source);
  cmd->add_flag("--json", f->json, "Print one JSON object: database, vm and the array decisions");
  cmd->add_option("--limit", f->limit, "Show the N newest decisions at most (default 20)");
  return [cmd, f] {
    if (auto found = find_installed_store(*cmd, *f->source); !found) return bad_input(found.error().message);
    if (f->limit < 1 || f->limit > most_limit)
      return bad_input("--limit: must be from 1 to " + std::to_string(most_limit));
    auto s = open_store_for_reading(*f->source);
    if (!s) return bad_input(s.error().message);
    auto t = (*s)->decisions(f->vm, f->limit);
    if (!t) return bad_input(t.error().message);
    if (!f->json) return print_text(*f, *t);
    nlohmann::ordered_json j;
    j["database"] = f->source->name();
    j["vm"] = f->vm;
    j["decisions"] = rows_json(*t);
    std::cout << j.dump(2) << '\n';
    return exit_ok;
  };
}

}  // namespace memlend::cli
