#include "replica/client.hpp"

#include "rdma/net.hpp"

#include <thread>

namespace memlend::replica {

namespace {

using rdma::Clock;
namespace net = rdma::net;

struct Message {
  Header header;
  std::vector<std::uint8_t> body;
};

// net's errors carry no code: a failure at the deadline is the deadline's,
// any other is `otherwise`.
Error dqlite_error(const std::string& address, const Error& e, ErrorCode otherwise, Clock::time_point deadline) {
  return Error{"dqlite " + one_line(address) + ": " + e.message,
               Clock::now() >= deadline ? ErrorCode::timed_out : otherwise};
}

// A socket to the member at `address`: its own over plain TCP, else the
// local end of a TLS connection and the pump that carries it.
Expected<Dialed> connect_to(const std::string& address, const ClientOptions& options, Clock::time_point deadline) {
  if (!rdma::parse_endpoint(address))
    return Error{"dqlite address \"" + one_line(address) + "\" is not host:port", ErrorCode::invalid_input};
  if (options.tls) {
    auto dialed = dial(*options.tls, address, deadline);
    if (!dialed) return Error{"dqlite " + dialed.error().message, dialed.error().code};
    return dialed;
  }
  auto fd = net::connect_tcp(address, deadline);
  if (!fd) return dqlite_error(address, fd.error(), ErrorCode::unavailable, deadline);
  Dialed plain;
  plain.local = std::move(*fd);
  return plain;
}

std::string type_name(std::uint8_t type) { return "response type " + std::to_string(type); }

}  // namespace

struct Client::State {
  std::unique_ptr<Pump> pump;  // with TLS; declared first, so that it stops after fd closed
  rdma::UniqueFd fd;
  std::string address;
  ClientOptions limits;
  std::uint64_t failure_code = 0;

  // An error that leaves the stream in an unknown place ends the connection.
  Error spend(Error e) {
    fd.reset();
    pump.reset();
    return e;
  }
  Expected<void> usable() const {
    if (!fd) return Error{"dqlite connection to " + one_line(address) + " is closed after an earlier error",
                          ErrorCode::unavailable};
    return {};
  }
  Expected<void> send(Request type, const Body& body, Clock::time_point deadline) {
    if (auto ok = usable(); !ok) return ok;
    if (!body.status()) return body.status();
    failure_code = 0;
    auto bytes = body.message(type);
    return send_all(bytes.data(), bytes.size(), deadline);
  }
  Expected<void> send_all(const std::uint8_t* p, std::size_t n, Clock::time_point deadline) {
    iovec iov{const_cast<std::uint8_t*>(p), n};
    if (auto sent = net::send_all(fd.get(), &iov, 1, deadline); !sent)
      return spend(dqlite_error(address, sent.error(), ErrorCode::io, deadline));
    return {};
  }
  Expected<void> recv_exact(std::uint8_t* p, std::size_t n, Clock::time_point deadline) {
    if (auto got = net::recv_exact(fd.get(), p, n, deadline); !got)
      return spend(dqlite_error(address, got.error(), ErrorCode::unavailable, deadline));
    return {};
  }
  Expected<Message> receive(Clock::time_point deadline) {
    std::uint8_t head[header_bytes];
    if (auto got = recv_exact(head, sizeof head, deadline); !got) return got.error();
    auto header = decode_header(head, sizeof head);
    if (!header) return spend(header.error());
    if (header->body_bytes() > limits.max_message)
      return spend(Error{"dqlite response of " + std::to_string(header->body_bytes()) + " bytes exceeds the limit of " +
                             std::to_string(limits.max_message),
                         ErrorCode::invalid_input});
    Message m{*header, std::vector<std::uint8_t>(header->body_bytes())};
    if (auto got = recv_exact(m.body.data(), m.body.size(), deadline); !got) return got.error();
    return m;
  }
  // A FAILURE as an error; any other type but `want` spends the connection.
  Expected<void> check(const Message& m, Response want) {
    if (m.header.type == static_cast<std::uint8_t>(want)) return {};
    if (m.header.type != static_cast<std::uint8_t>(Response::failure))
      return spend(Error{"dqlite answered with " + type_name(m.header.type) + " where " +
                             type_name(static_cast<std::uint8_t>(want)) + " was due",
                         ErrorCode::invalid_input});
    auto f = decode_failure(m.body.data(), m.body.size());
    if (!f) return spend(f.error());
    failure_code = f->code;
    bool elsewhere = f->code == not_leader_code || f->code == leadership_lost_code;
    return Error{"dqlite " + one_line(address) + ": " + one_line(f->message) + " (code " + std::to_string(f->code) + ")",
                 elsewhere ? ErrorCode::unavailable : ErrorCode::refused};
  }
  // One request and its one response of type `want`, decoded by `decode`.
  template <class Decode>
  auto call(Request type, const Body& body, Response want, Decode decode)
      -> decltype(decode(std::declval<const std::uint8_t*>(), std::size_t{})) {
    auto deadline = Clock::now() + limits.timeout;
    if (auto sent = send(type, body, deadline); !sent) return sent.error();
    auto m = receive(deadline);
    if (!m) return m.error();
    if (auto ok = check(*m, want); !ok) return ok.error();
    auto decoded = decode(m->body.data(), m->body.size());
    if (!decoded) return spend(decoded.error());
    return decoded;
  }
};

Client::Client(std::unique_ptr<State> state) : s_(std::move(state)) {}
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;
Client::~Client() = default;

Expected<Client> Client::connect(const std::string& address, ClientOptions limits) {
  auto deadline = Clock::now() + limits.timeout;
  auto dialed = connect_to(address, limits, deadline);
  if (!dialed) return dialed.error();
  auto s = std::make_unique<State>();
  s->fd = std::move(dialed->local);
  s->pump = std::move(dialed->pump);
  s->address = address;
  s->limits = limits;
  std::uint8_t version[8];
  for (int i = 0; i < 8; ++i) version[i] = static_cast<std::uint8_t>(protocol_version >> (8 * i));
  if (auto sent = s->send_all(version, sizeof version, deadline); !sent) return sent.error();
  auto welcome = s->call(Request::client, Body().u64(0), Response::welcome, decode_welcome);
  if (!welcome) return welcome.error();
  return Client(std::move(s));
}

const std::string& Client::address() const { return s_->address; }
std::uint64_t Client::failure_code() const { return s_->failure_code; }
bool Client::spent() const { return !s_->fd; }

Expected<NodeInfo> Client::leader() {
  return s_->call(Request::leader, Body().u64(0), Response::server, decode_server);
}

Expected<void> Client::add(std::uint64_t id, const std::string& address) {
  return s_->call(Request::add, Body().u64(id).text(address), Response::empty, decode_empty);
}

Expected<void> Client::assign(std::uint64_t id, Role role) {
  return s_->call(Request::assign, Body().u64(id).u64(static_cast<std::uint64_t>(role)), Response::empty,
                  decode_empty);
}

Expected<void> Client::remove(std::uint64_t id) {
  return s_->call(Request::remove, Body().u64(id), Response::empty, decode_empty);
}

Expected<std::vector<NodeInfo>> Client::cluster() {
  return s_->call(Request::cluster, Body().u64(1), Response::servers, decode_servers);
}

Expected<void> Client::open(const std::string& name) {
  auto db = s_->call(Request::open, Body().text(name).u64(0).text(""), Response::db, decode_db);
  if (!db) return db.error();
  return {};
}

Expected<ExecResult> Client::exec(const std::string& sql, const std::vector<Value>& params) {
  Body body;
  body.u64(0).text(sql);
  if (!params.empty()) body.params(params);
  return s_->call(Request::exec_sql, body, Response::result, decode_result);
}

Expected<Rows> Client::query(const std::string& sql, const std::vector<Value>& params) {
  Body body;
  body.u64(0).text(sql);
  if (!params.empty()) body.params(params);
  auto deadline = Clock::now() + s_->limits.timeout;
  if (auto sent = s_->send(Request::query_sql, body, deadline); !sent) return sent.error();
  Rows rows;
  std::size_t total = 0;
  for (;;) {
    auto m = s_->receive(deadline);
    if (!m) return m.error();
    if (auto ok = s_->check(*m, Response::rows); !ok) return ok.error();
    total += m->body.size();
    if (total > s_->limits.max_result)
      return s_->spend(Error{"dqlite rows exceed the limit of " + std::to_string(s_->limits.max_result) + " bytes",
                             ErrorCode::invalid_input});
    auto more = decode_rows(m->body.data(), m->body.size(), rows);
    if (!more) return s_->spend(more.error());
    if (!*more) return rows;
  }
}

Expected<Client> connect_leader(const std::vector<std::string>& addresses, const std::string& db,
                                std::chrono::milliseconds within, ClientOptions limits) {
  auto deadline = Clock::now() + within;
  Error last{"no dqlite address to ask for the leader", ErrorCode::invalid_input};
  if (addresses.empty()) return last;
  bool heard = false;  // whether `last` is a member's answer yet
  for (;;) {
    for (const auto& address : addresses) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) break;
      ClientOptions bounded = limits;
      bounded.timeout = std::min(limits.timeout, left);
      // An attempt the search's own deadline shortened may time out for
      // that alone: what a member answered before stays the reason given.
      const bool cut = left < limits.timeout;
      auto failed = [&](Error e) {
        if (!(cut && heard && e.code == ErrorCode::timed_out)) last = std::move(e);
        heard = true;
      };
      auto asked = Client::connect(address, bounded);
      if (!asked) {
        failed(asked.error());
        continue;
      }
      auto leader = asked->leader();
      if (!leader || leader->id == 0) {
        failed(leader ? Error{"dqlite " + one_line(address) + " knows no leader", ErrorCode::unavailable}
                      : leader.error());
        continue;
      }
      auto candidate = leader->address == address ? std::move(asked) : Client::connect(leader->address, bounded);
      if (!candidate) {
        failed(candidate.error());
        continue;
      }
      // Only the leader itself knows it still leads.
      auto confirmed = candidate->leader();
      if (!confirmed || confirmed->address != candidate->address()) {
        failed(confirmed ? Error{"dqlite " + one_line(candidate->address()) + " no longer leads",
                                 ErrorCode::unavailable}
                         : confirmed.error());
        continue;
      }
      if (!db.empty()) {
        if (auto opened = candidate->open(db); !opened) {
          failed(opened.error());
          continue;
        }
      }
      return candidate;
    }
    if (Clock::now() >= deadline)
      return Error{"no dqlite leader found within " + std::to_string(within.count()) + " ms: " + last.message,
                   ErrorCode::timed_out};
    // An election takes at least one election timeout: asking again at once
    // would only spin.
    std::this_thread::sleep_for(std::min<Clock::duration>(std::chrono::milliseconds(50), deadline - Clock::now()));
  }
}

}  // namespace memlend::replica
