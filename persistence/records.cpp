#include "persistence/records.hpp"

#include <array>

namespace memlend::store {

const std::vector<std::string_view>& event_names() {
  static const std::vector<std::string_view> names{
      "need_detected",      "lease_granted", "lease_released",   "mirror_created",
      "mirror_deleted",     "vm_migrated",   "migration_recommended", "donor_failed",
      "failover_to_mirror", "lease_rehomed", "memory_reclaimed", "unsatisfied",
      "mirror_failed",      "memory_lost"};
  return names;
}

}  // namespace memlend::store
