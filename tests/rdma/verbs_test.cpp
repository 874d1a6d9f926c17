// The verbs transport. Its code is compiled and linked everywhere; these
// tests need an RDMA device and report themselves skipped, with the reason,
// where there is none. Without a device, asking for verbs is a clear error.
#define BOOST_TEST_MODULE rdma_verbs
#include <boost/test/unit_test.hpp>

#include "rdma/verbs.hpp"
#include "tests/rdma/fixture.hpp"

using namespace memlend;
using namespace memlend::rdma;
namespace utf = boost::unit_test;

namespace {

struct HasDevice {
  boost::test_tools::assertion_result operator()(utf::test_unit_id) const {
    boost::test_tools::assertion_result r{first_rdma_device().has_value()};
    r.message() << "no RDMA device (ibv_get_device_list lists none): verbs tests skipped";
    return r;
  }
};

struct NoDevice {
  boost::test_tools::assertion_result operator()(utf::test_unit_id) const {
    boost::test_tools::assertion_result r{!first_rdma_device().has_value()};
    r.message() << "an RDMA device is present";
    return r;
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(without_a_device_verbs_is_a_clear_error, *utf::precondition(NoDevice())) {
  auto c = choose_transport(TransportKind::verbs);
  BOOST_TEST_REQUIRE(!c);
  BOOST_TEST(c.error().message.find("no RDMA device") != std::string::npos);
  auto a = choose_transport(TransportKind::automatic);
  BOOST_TEST_REQUIRE(bool(a));
  BOOST_TEST((a->kind == TransportKind::tcp));
  BOOST_TEST(a->reason == "no RDMA device found");
  auto pool = DonorPool::create(1 << 20, random_secret());
  BOOST_TEST_REQUIRE(bool(pool));
  ServerOptions o;
  o.transport = TransportKind::verbs;
  auto server = DonorServer::start(*pool, o);
  BOOST_TEST(!server);
  LeaseTarget lease{{"127.0.0.1:1", 1, 1, {}}, 4096, random_secret()};
  auto t = connect_lease(lease, TransportKind::verbs, {});
  BOOST_TEST(!t);
}

BOOST_AUTO_TEST_CASE(region_over_verbs_keeps_every_byte, *utf::precondition(HasDevice())) {
  auto pool = DonorPool::create(64 << 20, random_secret());
  BOOST_TEST_REQUIRE(bool(pool));
  ServerOptions o;
  o.transport = TransportKind::verbs;
  auto server = DonorServer::start(*pool, o);
  BOOST_TEST_REQUIRE(bool(server), (server ? "" : server.error().message));
  auto g = (*pool)->grant(8 << 20);
  BOOST_TEST_REQUIRE(bool(g));
  LeaseTarget lease{{(*server)->address(), g->id, g->epoch, {}}, g->bytes, g->secret};
  auto link = connect_link(lease, TransportKind::verbs, {});
  BOOST_TEST_REQUIRE(bool(link), (link ? "" : link.error().message));
  RegionConfig cfg;
  cfg.bytes = 8 << 20;
  cfg.block_bytes = 256 << 10;
  cfg.buffer_bytes = 1 << 20;
  auto region = RemoteRegion::create(cfg, std::move(*link));
  BOOST_TEST_REQUIRE(bool(region));
  test::fill((*region)->data(), cfg.bytes, 1);
  BOOST_TEST(test::check((*region)->data(), cfg.bytes, 1) == 0u);
  BOOST_TEST((*region)->stats().evictions > 0u);
}

BOOST_AUTO_TEST_CASE(verbs_refuses_a_wrong_secret, *utf::precondition(HasDevice())) {
  auto pool = DonorPool::create(1 << 20, random_secret());
  BOOST_TEST_REQUIRE(bool(pool));
  ServerOptions o;
  o.transport = TransportKind::verbs;
  auto server = DonorServer::start(*pool, o);
  BOOST_TEST_REQUIRE(bool(server));
  auto g = (*pool)->grant(4096);
  BOOST_TEST_REQUIRE(bool(g));
  LeaseTarget lease{{(*server)->address(), g->id, g->epoch, {}}, g->bytes, random_secret()};
  BOOST_TEST(!connect_lease(lease, TransportKind::verbs, {}));
}
