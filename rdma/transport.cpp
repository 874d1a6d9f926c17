#include "rdma/transport.hpp"

#include "rdma/protocol.hpp"
#include "rdma/tcp.hpp"
#include "rdma/verbs.hpp"

#include <algorithm>

namespace memlend::rdma {

Expected<Ticket> LeaseConnection::post_read(std::uint64_t offset, void* dst, std::size_t length) {
  return post(Direction::read, offset, dst, length);
}

Expected<Ticket> LeaseConnection::post_write(std::uint64_t offset, const void* src, std::size_t length) {
  return post(Direction::write, offset, const_cast<void*>(src), length);
}

Error LeaseConnection::outside_the_lease(std::uint64_t offset, std::uint64_t length) const {
  return Error{describe() + ": bytes " + std::to_string(offset) + "+" + std::to_string(length) +
               " are outside the lease"};
}

Expected<Ticket> LeaseConnection::post(Direction d, std::uint64_t offset, void* data, std::size_t length) {
  if (!wire::in_bounds(offset, length, lease_bytes())) return outside_the_lease(offset, length);
  auto* p = static_cast<std::uint8_t*>(data);
  Expected<Ticket> last = Ticket{0};
  do {
    auto chunk = static_cast<std::uint32_t>(std::min<std::size_t>(length, wire::max_transfer));
    last = post_one(d, offset, p, chunk);
    if (!last) return last;
    offset += chunk;
    p += chunk;
    length -= chunk;
  } while (length > 0);
  return last;
}

Status LeaseConnection::read(std::uint64_t offset, void* dst, std::size_t length) {
  auto t = post_read(offset, dst, length);
  if (!t) return t.error();
  return wait(*t);
}

Status LeaseConnection::write(std::uint64_t offset, const void* src, std::size_t length) {
  auto t = post_write(offset, src, length);
  if (!t) return t.error();
  return wait(*t);
}

Status LeaseConnection::discard(std::uint64_t offset, std::uint64_t length) {
  if (!wire::in_bounds(offset, length, lease_bytes())) return outside_the_lease(offset, length);
  Expected<Ticket> last = Ticket{0};
  do {
    // Pieces end where the lease's offset is a multiple of max_transfer, a
    // page boundary in the donor's pool too (a lease starts on one), so that
    // splitting leaves no page straddling two pieces merely zeroed.
    std::uint64_t to_boundary = wire::max_transfer - offset % wire::max_transfer;
    auto piece = static_cast<std::uint32_t>(std::min(length, to_boundary));
    last = post_discard(offset, piece);
    if (!last) return last.error();
    offset += piece;
    length -= piece;
  } while (length > 0);
  return wait(*last);
}

Expected<TransportChoice> choose_transport(TransportKind asked) {
  auto device = first_rdma_device();
  switch (asked) {
    case TransportKind::tcp: return TransportChoice{TransportKind::tcp, "asked for"};
    case TransportKind::verbs:
      if (!device)
        return Error{"--transport verbs: no RDMA device found (ibv_get_device_list lists none); "
                     "use --transport tcp or auto on this host"};
      return TransportChoice{TransportKind::verbs, "RDMA device " + *device};
    case TransportKind::automatic:
      if (device) return TransportChoice{TransportKind::verbs, "RDMA device " + *device};
      return TransportChoice{TransportKind::tcp, "no RDMA device found"};
  }
  return Error{"unknown transport"};
}

Expected<LeaseTarget> target_of(const LeaseAccess& access, std::uint64_t bytes) {
  auto key = from_hex<secret_bytes>(access.secret);
  if (!key) return Error{"lease " + std::to_string(access.id) + " at " + access.addr + ": no usable secret"};
  LeaseTarget t{access, bytes, *key};
  t.where.secret.clear();
  return t;
}

LeaseAccess access_of(const LeaseTarget& target) {
  LeaseAccess a = target.where;
  a.secret = to_hex(target.key);
  return a;
}

Expected<std::unique_ptr<LeaseConnection>> connect_lease(const LeaseTarget& lease, TransportKind kind,
                                                   const Timeouts& timeouts) {
  auto choice = choose_transport(kind);
  if (!choice) return choice.error();
  if (choice->kind == TransportKind::verbs) {
    auto v = connect_verbs_lease(lease, timeouts);
    // Asked for verbs: its error is the answer. Automatic: the donor may
    // lack an RDMA device even where this host has one, and TCP always works.
    if (v || kind == TransportKind::verbs) return v;
  }
  return connect_tcp_lease(lease, timeouts);
}

}  // namespace memlend::rdma
