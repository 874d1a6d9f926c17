// What the tests of memlend's store on a dqlite cluster share.
#pragma once

#include <boost/test/unit_test.hpp>

#include "persistence/store.hpp"

#include <memory>
#include <string>

namespace memlend::test::replica_store {

// Boost makes a check's message before it checks: an error read only when there is one.
template <class T>
std::string why(const memlend::Expected<T>& e) {
  return e ? std::string() : e.error().message;
}

inline std::unique_ptr<store::Store> open_ok(const store::Replica& where,
                                             store::Access access = store::Access::read_write) {
  store::Options o;
  o.access = access;
  auto s = store::Store::open_replicated(where, o);
  BOOST_TEST_REQUIRE(bool(s), why(s));
  return std::move(*s);
}

}  // namespace memlend::test::replica_store
