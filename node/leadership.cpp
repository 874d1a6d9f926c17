#include "node/leadership.hpp"

#include "core/log.hpp"
#include "core/stop_signals.hpp"
#include "replica/client.hpp"
#include "replica/roles.hpp"

#include <algorithm>
#include <csignal>
#include <thread>

namespace memlend {

namespace {

using namespace std::chrono_literals;

// Short: a member that does not answer its own process at once is busy
// with an election, and is asked again.
replica::ClientOptions quick(const MemberOptions& o) {
  replica::ClientOptions l;
  l.timeout = 1000ms;
  l.tls = o.tls;
  return l;
}

// Has the leader add this member, or give it the role it lacks.
Expected<void> join(const MemberOptions& o) {
  auto leader = replica::connect_leader(o.join, "", 2000ms, quick(o));
  if (!leader) return leader.error();
  auto members = leader->cluster();
  if (!members) return members.error();
  std::size_t voters = static_cast<std::size_t>(std::count_if(
      members->begin(), members->end(), [](const replica::NodeInfo& m) { return m.role == replica::Role::voter; }));
  auto me = std::find_if(members->begin(), members->end(), [&](const replica::NodeInfo& m) { return m.id == o.id; });
  if (me != members->end() && me->address != o.address)
    return Error{"member " + std::to_string(o.id) + " is known at " + me->address + ", not " + o.address +
                     "; an id is never reused",
                 ErrorCode::invalid_input};
  if (me == members->end()) {
    if (auto added = leader->add(o.id, o.address); !added) return added.error();
  } else if (me->role == replica::Role::voter || voters >= store_voters) {
    return {};
  }
  replica::Role role = voters < store_voters ? replica::Role::voter : replica::Role::standby;
  if (auto assigned = leader->assign(o.id, role); !assigned) return assigned.error();
  log::console("memlend: ", "store: member " + std::to_string(o.id) + " at " + o.address + " joined as a " +
            std::string(to_string(role)));
  return {};
}

}  // namespace

Expected<std::unique_ptr<Member>> Member::start(const MemberOptions& options) {
  if (options.id != 1 && options.join.empty())
    return Error{"--replica-join: a member other than 1 joins through the members already there",
                 ErrorCode::invalid_input};
  std::unique_ptr<Member> m(new Member(options));
  store::route_sqlite_log();  // before the node starts SQLite
  replica::NodeConfig nc;
  nc.id = options.id;
  nc.address = options.address;
  nc.data_dir = options.data_dir;
  nc.network_latency = options.network_latency;
  nc.tls = options.tls;
  auto node = replica::Node::start(nc);
  if (!node) return node.error();
  m->node_ = std::move(*node);
  m->keeper_ = std::thread([m = m.get()] { m->keep_roles(); });
  if (options.id == 1) return m;
  std::string said;
  do {
    auto joined = join(options);
    if (joined) return m;
    if (joined.error().code == ErrorCode::invalid_input) return joined.error();
    if (joined.error().message != said)
      log::console("memlend: ", "warning: store: cannot join the cluster through its members yet (" +
                                    joined.error().message + "); trying again");
    said = joined.error().message;
  } while (!stop_signal_within(500ms));
  return Error{"stopped before joining the store's cluster", ErrorCode::unavailable};
}

Member::~Member() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  stop_.notify_all();
  if (keeper_.joinable()) keeper_.join();
}

bool Member::leads() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!self_ || self_->spent()) {
    self_.reset();
    auto c = replica::Client::connect(options_.address, quick(options_));
    if (!c) return false;
    self_.emplace(std::move(*c));
  }
  auto leader = self_->leader();
  return leader && leader->id == options_.id;
}

void Member::keep_roles() {
  replica::RoleKeeper keeper([this](const std::string& address) { return replica::answers(address, quick(options_)); });
  std::string said;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_.wait_for(lock, options_.role_period, [this] { return stopping_; })) {
    lock.unlock();
    auto c = replica::Client::connect(options_.address, quick(options_));
    auto leader = c ? c->leader() : Expected<replica::NodeInfo>(c.error());
    if (leader && leader->id == options_.id) {
      auto done = keeper.pass(*c, options_.id);
      if (done) {
        for (const auto& change : *done) log::console("memlend: ", "store: " + change);
        said.clear();
      } else if (done.error().message != said) {
        said = done.error().message;
        log::console("memlend: ", "warning: store: cannot keep the members' roles (" + said + "); trying again");
      }
    }
    lock.lock();
  }
}

store::Replica Member::store() const {
  store::Replica r;
  r.members = {options_.address};
  r.tls = options_.tls;
  r.database = options_.database;
  return r;
}

int follow_leadership(Member& member, const std::function<int(std::function<bool()> still_leading)>& lead) {
  bool said = false;
  for (;;) {
    if (!member.leads()) {
      if (!said)
        log::console("memlend: ", "store: member " + std::to_string(member.options().id) +
                                      " follows; the controller runs on the leader");
      said = true;
      if (stop_signal_within(250ms)) return 0;
      continue;
    }
    said = false;
    log::console("memlend: ",
                 "store: member " + std::to_string(member.options().id) + " leads; the controller starts here");
    int status = lead([&member] { return member.leads(); });
    if (status != lost_leadership) return status;
    log::console("memlend: ", "warning: store: member " + std::to_string(member.options().id) +
                                  " no longer leads; the controller stopped here and runs on the new leader");
  }
}

}  // namespace memlend
