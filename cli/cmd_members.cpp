// `memlend members`: the members of the dqlite cluster that keeps the store,
// their roles and whether each answers now; `--remove ID` takes a dead one
// out for good, the step that recovering or replacing a member ends with;
// `--recover` rebuilds a cluster that lost its quorum for good around this
// node's stopped member.
#include "cli/cli.hpp"
#include "cli/cluster_flags.hpp"
#include "cli/config_file.hpp"
#include "cli/store_rows.hpp"
#include "rdma/net.hpp"
#include "replica/client.hpp"
#include "replica/node.hpp"
#include "replica/roles.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>

namespace memlend::cli {

namespace {

using namespace std::chrono_literals;

struct MembersFlags {
  std::shared_ptr<StoreSource> source = std::make_shared<StoreSource>();
  std::uint64_t remove = 0;
  bool json = false;
  std::shared_ptr<const replica::Tls> tls;  // loaded from source's files
  // --recover: this node's member as memlend run has it (its config's keys).
  bool recover = false;
  std::uint64_t replica_id = 0;
  std::string replica_address, replica_dir;
};

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
  std::cout << "the store's cluster through " << members_list(f.source->members) << ": " << rows.size() << " members\n";
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

// The member this node's config names, stopped, made the one voter of the
// cluster from its own log.
int recover(MembersFlags& f, CLI::App& cmd) {
  if (cmd.get_option("--config")->count() == 0 && ::access(installed_config, F_OK) == 0)
    if (auto bad = apply_config_file(cmd, installed_config)) return bad_input(bad->message);
  if (f.replica_id == 0) return bad_input("--replica-id: needed with --recover (this node's member, from 1)");
  if (!parse_address(f.replica_address))
    return bad_input("--replica-address: \"" + f.replica_address + "\" is not HOST:PORT (this node's member)");
  if (f.replica_dir.empty()) return bad_input("--replica-dir: needed with --recover (this node's member's log)");
  // Recovering a log that a running member writes would tear it: anything
  // that takes a connection at its address is taken for it.
  if (rdma::net::connect_tcp(f.replica_address, std::chrono::milliseconds(1000)))
    return bad_input("--recover: something answers at " + f.replica_address + ": stop this node's memlend first");
  replica::NodeConfig c;
  c.id = f.replica_id;
  c.address = f.replica_address;
  c.data_dir = f.replica_dir;
  if (auto done = replica::recover_alone(c); !done) return bad_input("--replica-dir: " + done.error().message);
  // Run as root (sudo), the recovery wrote Raft's new files as root, which
  // the service's user could then not open: they go to the directory's owner.
  struct stat dir {};
  if (::geteuid() == 0 && ::stat(c.data_dir.c_str(), &dir) == 0) {
    std::error_code ec;
    for (const auto& e : std::filesystem::recursive_directory_iterator(c.data_dir, ec))
      if (::lchown(e.path().c_str(), dir.st_uid, dir.st_gid) != 0)
        return bad_input("--replica-dir: recovered, but " + e.path().string() + " could not be given to its owner: " +
                         std::strerror(errno));
    if (ec) return bad_input("--replica-dir: recovered, but " + c.data_dir + " could not be read: " + ec.message());
  }
  std::cout << "member " << c.id << " (" << c.address << ") is now the only member of the store's cluster, a voter,\n"
            << "with its log as it was. Start its memlend; then have every other node join it anew: its\n"
            << "--replica-dir emptied, a --replica-id never used before, --replica-join " << c.address << ".\n";
  return exit_ok;
}

}  // namespace

Action add_members(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "members",
      "List the members of the dqlite cluster that keeps the store (memlend run --replica-*):\n"
      "each one's id, address and role, which leads, and which do not answer now. With\n"
      "--remove ID, take a member that no longer answers out of the cluster for good. With\n"
      "--recover, on a node whose memlend is stopped, make its member the cluster's one voter\n"
      "when the cluster lost its quorum for good (the other members join it anew).");
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
  auto* recovering =
      cmd->add_flag("--recover", f->recover,
                    "Make this node's stopped member the one voter of the cluster, from its own log (when\n"
                    "two voters of three are gone for good); its --replica-* from the node's config");
  recovering->excludes("--remove")->excludes("--replica");
  cmd->add_option("--replica-id", f->replica_id, "With --recover: this node's member's id")->type_name("ID");
  cmd->add_option("--replica-address", f->replica_address, "With --recover: this node's member's address")
      ->type_name("HOST:PORT");
  cmd->add_option("--replica-dir", f->replica_dir, "With --recover: this node's member's Raft log")
      ->type_name("DIR");
  return [cmd, f] {
    if (f->recover) return recover(*f, *cmd);
    if (auto found = find_installed_store(*cmd, *f->source); !found) return bad_input(found.error().message);
    if (f->source->members.empty())
      return bad_input("--replica: needed (no config names this node's member of a cluster)");
    if (cmd->get_option("--remove")->count() > 0 && f->remove == 0) return bad_input("--remove: ids start at 1");
    auto tls = f->source->tls();
    if (!tls) return bad_input(tls.error().message);
    f->tls = *tls;
    auto leader = replica::connect_leader(f->source->members, "", 10s, quick(*f));
    if (!leader) {
      std::cerr << "memlend: no leader of the store's cluster found through " << members_list(f->source->members)
                << " (" << leader.error().message << ")\n";
      return exit_failure;
    }
    return f->remove ? remove(*f, *leader) : list(*f, *leader);
  };
}

}  // namespace memlend::cli
