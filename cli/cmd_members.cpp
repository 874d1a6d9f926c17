// `memlend members`: the members of the dqlite cluster that keeps the store,
// their roles and whether each answers now; `--remove ID` takes a dead one
// out for good, the step that recovering or replacing a member ends with.
#include "cli/cli.hpp"
#include "cli/store_rows.hpp"
#include "replica/client.hpp"
#include "replica/roles.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>

namespace memlend::cli {

namespace {

using namespace std::chrono_literals;

struct MembersFlags {
  std::shared_ptr<StoreSource> source = std::make_shared<StoreSource>();
  std::uint64_t remove = 0;
  bool json = false;
  std::shared_ptr<const replica::Tls> tls;  // loaded from source's files
};

std::string joined(const std::vector<std::string>& members) {
  std::string out;
  for (const auto& m : members) out += (out.empty() ? "" : ",") + m;
  return out;
}

replica::ClientOptions quick(const MembersFlags& f) {
  replica::ClientOptions l;
  l.timeout = 2000ms;
  l.tls = f.tls;
  return l;
}

int list(const MembersFlags& f, replica::Client& leader) {
  auto members = leader.cluster();
  if (!members) return bad_input("cannot list the members: " + members.error().message);
  auto who = leader.leader();
  std::uint64_t leads = who ? who->id : 0;
  std::sort(members->begin(), members->end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (const auto& m : *members)
    rows.push_back({{"id", m.id},
                    {"address", m.address},
                    {"role", std::string(to_string(m.role))},
                    {"leads", m.id == leads},
                    {"answers", m.id == leads || replica::answers(m.address, quick(f))}});
  if (f.json) {
    std::cout << nlohmann::ordered_json{{"through", f.source->name()}, {"members", rows}}.dump(2) << '\n';
    return exit_ok;
  }
  std::cout << "the store's cluster through " << joined(f.source->members) << ": " << rows.size() << " members\n";
  for (const auto& r : rows)
    std::cout << "  " << r["id"].get<std::uint64_t>() << "  " << r["address"].get<std::string>() << "  "
              << r["role"].get<std::string>() << (r["leads"].get<bool>() ? ", leads" : "")
              << (r["answers"].get<bool>() ? "" : ", does not answer") << '\n';
  return exit_ok;
}

int remove(const MembersFlags& f, replica::Client& leader) {
  auto members = leader.cluster();
  if (!members) return bad_input("cannot list the members: " + members.error().message);
  auto it = std::find_if(members->begin(), members->end(), [&](const auto& m) { return m.id == f.remove; });
  std::string which = "--remove: member " + std::to_string(f.remove);
  if (it == members->end()) return bad_input(which + " is not in the cluster (memlend members lists them)");
  auto who = leader.leader();
  if (who && who->id == f.remove) return bad_input(which + " leads; it cannot remove itself");
  // A removed member that still runs would ask the leader to add it again.
  if (replica::answers(it->address, quick(f)))
    return bad_input(which + " at " + it->address + " answers: stop its memlend first");
  if (auto done = leader.remove(f.remove); !done) return bad_input(which + ": " + done.error().message);
  std::cout << "removed member " << f.remove << " (" << it->address << "), a " << to_string(it->role)
            << "; its id is not to be used again\n";
  return exit_ok;
}

}  // namespace

Action add_members(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "members",
      "List the members of the dqlite cluster that keeps the store (memlend run --replica-*):\n"
      "each one's id, address and role, which leads, and which do not answer now. With\n"
      "--remove ID, take a member that no longer answers out of the cluster for good.");
  auto f = std::make_shared<MembersFlags>();
  cmd->add_option_function<std::string>(
         "--replica",
         [f](const std::string& list) {
           auto m = parse_members(list, "--replica");
           if (!m) throw CLI::ValidationError(m.error().message);
           f->source->members = std::move(*m);
         },
         "The cluster, through these members of it (any one that answers will do); the default\n"
         "on a node whose config names its member")
      ->type_name("HOST:PORT[,...]");
  cmd->add_option("--remove", f->remove, "Remove member ID, which must not answer (stop its memlend first)")
      ->type_name("ID");
  cmd->add_flag("--json", f->json, "Print one JSON object: through, and the array members");
  add_tls_options(*cmd, f->source);
  return [cmd, f] {
    if (f->source->members.empty()) {
      if (auto found = find_installed_store(*cmd, *f->source); !found) return bad_input(found.error().message);
      if (f->source->members.empty())
        return bad_input("--replica: needed (no config names this node's member of a cluster)");
    }
    if (cmd->get_option("--remove")->count() > 0 && f->remove == 0) return bad_input("--remove: ids start at 1");
    auto tls = f->source->tls();
    if (!tls) return bad_input(tls.error().message);
    f->tls = *tls;
    auto leader = replica::connect_leader(f->source->members, "", 10s, quick(*f));
    if (!leader) {
      std::cerr << "memlend: no leader of the store's cluster found through " << joined(f->source->members) << " ("
                << leader.error().message << ")\n";
      return exit_failure;
    }
    return f->remove ? remove(*f, *leader) : list(*f, *leader);
  };
}

}  // namespace memlend::cli
