#include "rdma/session.hpp"

#include "rdma/donor.hpp"

namespace memlend::rdma {

using wire::Code;
using wire::Op;

Status DonorSession::respond(Channel& channel, const wire::Request& r, Code code, std::uint64_t value,
                             std::uint64_t value2, const void* payload, std::uint32_t length) {
  wire::Response resp;
  resp.code = code;
  resp.op = r.op;
  resp.seq = r.seq;
  resp.length = length;
  resp.value = value;
  resp.value2 = value2;
  std::uint8_t header[wire::response_size];
  wire::encode(resp, header);
  iovec iov[2] = {{header, sizeof header}, {const_cast<void*>(payload), length}};
  return channel.write_all(iov, length ? 2 : 1);
}

Status DonorSession::refuse(Channel& channel, const wire::Request& r, const std::string& why) {
  // The refusal is a courtesy so the client can say why; the connection is
  // dropped either way.
  (void)respond(channel, r, Code::refused);
  return Error{"refused request: " + why};
}

Status DonorSession::serve_one(Channel& channel) {
  std::uint8_t header[wire::request_size];
  if (auto s = channel.read_exact(header, sizeof header); !s) return s;
  auto r = wire::decode_request(header, sizeof header);
  if (!r) return r.error();

  std::shared_ptr<Lease> lease;
  const wire::Mac* mac = &pool_.pool_mac();
  if (!wire::pool_op(r->op)) {
    lease = pool_.find(r->lease);
    // The same answer for "no such lease" and "wrong tag" below: nothing to
    // learn about other leases from the difference.
    if (!lease) return refuse(channel, *r, "lease " + std::to_string(r->lease) + " unknown");
    mac = &lease->mac();
  }
  if (!wire::tag_equal(mac->tag(header, nonce_), r->tag))
    return refuse(channel, *r, "bad authentication tag for lease " + std::to_string(r->lease));
  if (r->seq <= last_seq_) return refuse(channel, *r, "sequence number did not grow (replay?)");
  last_seq_ = r->seq;

  switch (r->op) {
    case Op::read:
    case Op::write:
    case Op::discard: {
      if (!wire::in_bounds(r->offset, r->length, lease->bytes()))
        return refuse(channel, *r, "bytes " + std::to_string(r->offset) + "+" + std::to_string(r->length) +
                                       " outside lease " + std::to_string(r->lease));
      if (lease->revoked()) return refuse(channel, *r, "lease revoked");
      if (r->op == Op::discard) {
        if (auto s = pool_.discard(*lease, r->offset, r->length); !s) return refuse(channel, *r, s.error().message);
        return respond(channel, *r, Code::ok);
      }
      std::uint8_t* at = pool_.base() + lease->offset() + r->offset;
      if (r->op == Op::read) return respond(channel, *r, Code::ok, 0, 0, at, r->length);
      // Straight into the lease's memory: the tag and bounds were checked
      // before a single payload byte was read.
      if (auto s = channel.read_exact(at, r->length); !s) return s;
      return respond(channel, *r, Code::ok);
    }
    case Op::attach:
      attached_.insert(r->lease);
      return respond(channel, *r, Code::ok, lease->bytes(), lease->epoch());
    case Op::release: {
      released_.insert(r->lease);
      lease.reset();  // revoke() waits for every holder to let go, this one too
      auto s = pool_.revoke(r->lease);
      return respond(channel, *r, s ? Code::ok : Code::refused);
    }
    case Op::grant: {
      auto g = pool_.grant(r->offset);
      if (!g) return respond(channel, *r, Code::no_space);
      // The granting connection holds the lease too: a recipient that dies
      // between grant and connect still leaves an orphan to reclaim.
      granted_.insert(g->id);
      return respond(channel, *r, Code::ok, g->id, g->epoch);
    }
    case Op::stats: {
      auto s = pool_.stats();
      return respond(channel, *r, Code::ok, s.granted_bytes, s.pool_bytes);
    }
    case Op::usage: {
      auto s = pool_.stats();
      return respond(channel, *r, Code::ok, s.resident_bytes, s.discarded_bytes);
    }
  }
  return refuse(channel, *r, "unknown op");
}

}  // namespace memlend::rdma
