// Internal to rdma/: the transports' constructors, behind connect_lease().
#pragma once

#include "rdma/transport.hpp"

namespace memlend::rdma {

Expected<std::unique_ptr<LeaseConnection>> connect_tcp_lease(const LeaseTarget& lease, const Timeouts& timeouts);
// The donor's hello, read on a short-lived connection: which verbs port it
// offers, if any.
Expected<std::uint16_t> donor_verbs_port(const std::string& donor, const Timeouts& timeouts);
Expected<std::unique_ptr<LeaseConnection>> connect_verbs_lease(const LeaseTarget& lease, const Timeouts& timeouts);

}  // namespace memlend::rdma
