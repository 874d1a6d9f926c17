// Certificates for tests of who an agent is, made with the openssl tool for
// each run: a cluster CA, another CA, and node certificates made by them.
#pragma once

#include <boost/test/unit_test.hpp>

#include "identity/cluster_auth.hpp"
#include "tests/support/child.hpp"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace memlend::test {

struct Pki {
  std::string dir = make_temp_dir("cluster-auth");
  Pki() {
    make_ca("ca");
    make_ca("otherca");
    node("B", "ca");
    node("evil", "ca");
    node("stranger", "otherca");
    // A certificate whose CN is not the host but whose DNS SAN is.
    std::ofstream(dir + "/san.ext") << "subjectAltName=DNS:node7.example,DNS:B\n";
    node("node7", "ca", "san.ext");
  }
  ~Pki() { std::filesystem::remove_all(dir); }

  void openssl(std::vector<std::string> args) {
    args.insert(args.begin(), "/usr/bin/openssl");
    auto r = run_process(args, 60);
    BOOST_TEST_REQUIRE(r.status == 0, r.err);
  }
  void make_ca(const std::string& name) {
    openssl({"req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + name, "-keyout",
             file(name + ".key"), "-out", file(name + ".pem")});
  }
  void node(const std::string& name, const std::string& ca, const std::string& ext = {}) {
    openssl({"req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name, "-keyout", file(name + ".key"), "-out",
             file(name + ".csr")});
    std::vector<std::string> sign{"x509", "-req", "-days", "2", "-in", file(name + ".csr"), "-CA", file(ca + ".pem"),
                                  "-CAkey", file(ca + ".key"), "-CAcreateserial", "-out", file(name + ".pem")};
    if (!ext.empty()) sign.insert(sign.end(), {"-extfile", file(ext)});
    openssl(sign);
  }
  std::string file(const std::string& name) const { return dir + "/" + name; }

  memlend::NodeIdentity identity(const std::string& name) const {
    auto id = memlend::NodeIdentity::load(file(name + ".pem"), file(name + ".key"));
    BOOST_TEST_REQUIRE(bool(id), (id ? "" : id.error().message));
    return *id;
  }
  std::shared_ptr<const memlend::ClusterCa> cluster_ca() const {
    auto ca = memlend::ClusterCa::load(file("ca.pem"));
    BOOST_TEST_REQUIRE(bool(ca), (ca ? "" : ca.error().message));
    return *ca;
  }
};

}  // namespace memlend::test
