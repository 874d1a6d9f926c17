// The database schema as a list of forward migrations. The schema version is
// SQLite's `PRAGMA user_version` (in the file header, so it changes in the
// same transaction as the tables); `schema_history` records when each step
// ran. A file whose version is above the last migration here was written by
// a newer memlend and is refused, never touched.
//
// Adding a version: append a Migration (never edit a shipped one), add a
// fixture for it (tests/persistence/fixtures/README.md), and keep the views'
// columns, which support tooling reads, compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace memlend::store {

struct Migration {
  int to_version = 0;
  std::string summary;
  std::string sql;  // run in one transaction with the version bump
};

// "mlnd": tells memlend's files from any other SQLite file.
inline constexpr std::int32_t application_id = 0x6d6c6e64;

const std::vector<Migration>& builtin_migrations();

}  // namespace memlend::store
