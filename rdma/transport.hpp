// The transport: one connection from a recipient to one lease on one donor,
// with one-sided semantics — read or write `length` bytes at `offset` of the
// lease, and nothing else. Two implementations: verbs (RDMA READ/WRITE with
// the lease's rkey; the donor's CPU is not involved) and TCP (the same
// operations as framed, authenticated requests served by a donor thread).
#pragma once

#include "core/lease_access.hpp"
#include "rdma/common.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace memlend::rdma {

// A lease as a transport reaches it: the control plane's LeaseAccess
// (core/lease_access.hpp) with what only this edge needs, the size the
// recipient maps and the secret as the key a handshake signs with. The key is
// held once, decoded: `where.secret` stays empty.
struct LeaseTarget {
  LeaseAccess where;
  std::uint64_t bytes = 0;  // 0 while unknown: as large as the donor says
  Secret key{};
};

// `access` as a target of `bytes`; an error if it has no usable secret.
Expected<LeaseTarget> target_of(const LeaseAccess& access, std::uint64_t bytes);
// What the control plane hands on of a target: its secret as hex again.
LeaseAccess access_of(const LeaseTarget& target);

// Transfers complete in the order they were posted; a ticket names one.
using Ticket = std::uint64_t;

// One lease at a donor, reached over one transport (verbs or TCP): the name
// keeps it apart from memlend::Transport, the enum saying which one a lease uses.
class LeaseConnection {
 public:
  virtual ~LeaseConnection() = default;

  // Posting starts a transfer and returns at once (or when the connection has
  // room for it), so a fault handler can fetch the next block while it maps
  // the current one. `dst`/`src` must stay valid and `src` unchanged until
  // wait() has covered the ticket.
  Expected<Ticket> post_read(std::uint64_t offset, void* dst, std::size_t length);
  Expected<Ticket> post_write(std::uint64_t offset, const void* src, std::size_t length);
  // Completes every transfer up to and including `ticket`. An error here, as
  // anywhere, means the donor is unreachable or refused us: the transport is
  // broken for good and every later call fails at once.
  virtual Status wait(Ticket ticket) = 0;

  Status read(std::uint64_t offset, void* dst, std::size_t length);
  Status write(std::uint64_t offset, const void* src, std::size_t length);

  // The range is free: afterwards it reads zeros. Returns once the donor has
  // done it, after every transfer posted before it, within the I/O timeout
  // (per piece of wire::max_transfer). Over TCP the donor also gives the
  // range's whole pool pages back to the OS. Over verbs, which keeps no
  // control connection to the donor, it is RDMA WRITEs of zeros: erased, not
  // freed, until the lease ends.
  Status discard(std::uint64_t offset, std::uint64_t length);

  // Where transfers will land, so that verbs can register that memory once
  // instead of per transfer. TCP needs nothing.
  virtual Status register_memory(void* base, std::size_t length) { return ok(); }
  // From any thread: makes a blocked call return an error soon, and every
  // later call fail. For shutdown and for failing over without waiting out a
  // timeout when the control plane already knows the donor is gone.
  virtual void interrupt() = 0;

  virtual TransportKind kind() const = 0;
  virtual std::uint64_t lease_bytes() const = 0;
  // "tcp 10.0.0.2:7000 lease 3", for logs and errors.
  virtual std::string describe() const = 0;

 protected:
  enum class Direction { read, write };
  // One transfer within the lease, of at most wire::max_transfer bytes; the
  // base class checks bounds and splits larger ones.
  virtual Expected<Ticket> post_one(Direction d, std::uint64_t offset, void* data, std::uint32_t length) = 0;
  // One discard within the lease, likewise checked and split by the base class.
  virtual Expected<Ticket> post_discard(std::uint64_t offset, std::uint32_t length) = 0;

 private:
  Expected<Ticket> post(Direction d, std::uint64_t offset, void* data, std::size_t length);
  Error outside_the_lease(std::uint64_t offset, std::uint64_t length) const;
};

// Connects to the lease with the transport asked for. `automatic` picks verbs
// where an RDMA device exists and TCP elsewhere; verbs without a device is a
// clear error, never a crash.
Expected<std::unique_ptr<LeaseConnection>> connect_lease(const LeaseTarget& lease, TransportKind kind,
                                                   const Timeouts& timeouts);

// `automatic` resolved for this machine, with the reason, for the log:
// {tcp, "no RDMA device found"} or {verbs, "RDMA device mlx5_0"}.
struct TransportChoice {
  TransportKind kind = TransportKind::tcp;
  std::string reason;
};
Expected<TransportChoice> choose_transport(TransportKind asked);

}  // namespace memlend::rdma
