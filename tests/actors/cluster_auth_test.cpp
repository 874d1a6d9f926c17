// Who an agent is: the controller's check of a joining agent's certificate
// and of its proof that it holds the certificate's key, on real certificates
// made with the openssl tool for each run.
#define BOOST_TEST_MODULE cluster_auth
#include <boost/test/unit_test.hpp>

#include "identity/cluster_auth.hpp"
#include "tests/support/pki.hpp"

using memlend::ClusterCa;
using memlend::join_statement;
using memlend::NodeIdentity;
using memlend::test::Pki;

namespace {

// What the controller says of `who` joining as `host`, signing over `nonce`
// when the controller issued `issued`.
std::string check(const Pki& pki, const std::string& who, const std::string& host, const std::string& issued = "n1",
                  const std::string& nonce = "n1") {
  NodeIdentity id = pki.identity(who);
  auto signature = id.sign(join_statement(nonce, "c1", host, 7));
  BOOST_TEST_REQUIRE(bool(signature));
  return pki.cluster_ca()->check(id.certificate_pem(), host, join_statement(issued, "c1", host, 7), *signature);
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_node_joins_as_the_host_its_certificate_names) {
  Pki pki;
  BOOST_TEST(check(pki, "B", "B") == "");
  BOOST_TEST(check(pki, "node7", "B") == "");  // by its DNS SAN
}

BOOST_AUTO_TEST_CASE(a_valid_certificate_for_another_name_is_refused) {
  Pki pki;
  BOOST_TEST(check(pki, "evil", "B") == "its certificate is for evil, not B");
  // Names match exactly: not case-blind, not a prefix.
  BOOST_TEST(check(pki, "B", "b") != "");
  BOOST_TEST(check(pki, "node7", "node7.exampl") != "");
}

BOOST_AUTO_TEST_CASE(another_nonce_another_ca_or_another_key_is_refused) {
  Pki pki;
  BOOST_TEST(check(pki, "B", "B", "n1", "n0") == "its signature does not prove it holds its certificate's key");
  BOOST_TEST(check(pki, "stranger", "stranger").find("its certificate is not from the cluster's CA") == 0u);
  // B's certificate (public, anyone may have a copy) signed with evil's key.
  NodeIdentity evil = pki.identity("evil");
  auto forged = evil.sign(join_statement("n1", "c1", "B", 7));
  BOOST_TEST_REQUIRE(bool(forged));
  BOOST_TEST(pki.cluster_ca()->check(pki.identity("B").certificate_pem(), "B", join_statement("n1", "c1", "B", 7),
                                     *forged) == "its signature does not prove it holds its certificate's key");
  BOOST_TEST(pki.cluster_ca()->check("", "B", "x", "00") == "it sent no certificate");
  BOOST_TEST(pki.cluster_ca()->check(std::string(70000, 'A'), "B", "x", "00") ==
             "its certificate is larger than 64 KiB");
  BOOST_TEST(pki.cluster_ca()->check(pki.identity("B").certificate_pem(), "B", "x", "not hex") ==
             "it sent no signature");
}

BOOST_AUTO_TEST_CASE(a_key_that_is_not_the_certificates_is_bad_input) {
  Pki pki;
  auto id = NodeIdentity::load(pki.file("B.pem"), pki.file("evil.key"));
  BOOST_TEST_REQUIRE(!id);
  BOOST_TEST(id.error().message == "--tls-key: " + pki.file("evil.key") + ": is not the key of " + pki.file("B.pem"));
  auto missing = NodeIdentity::load(pki.file("none.pem"), pki.file("B.key"));
  BOOST_TEST_REQUIRE(!missing);
  BOOST_TEST(missing.error().message == "--tls-cert: " + pki.file("none.pem") + ": cannot read it");
  auto not_pem = NodeIdentity::load(pki.file("san.ext"), pki.file("B.key"));
  BOOST_TEST_REQUIRE(!not_pem);
  BOOST_TEST(not_pem.error().message == "--tls-cert: " + pki.file("san.ext") + ": not a PEM certificate");
}

BOOST_AUTO_TEST_CASE(each_host_has_its_own_pool_secret) {
  Pki pki;
  BOOST_TEST(pki.identity("B").pool_secret() == pki.identity("B").pool_secret());
  BOOST_TEST(pki.identity("B").pool_secret() != pki.identity("evil").pool_secret());
  auto hex = memlend::hex_of_secret(pki.identity("B").pool_secret());
  BOOST_TEST(hex.size() == 64u);
  BOOST_TEST((memlend::secret_of_hex(hex) == pki.identity("B").pool_secret()));
  BOOST_TEST(!memlend::secret_of_hex("zz"));
}
