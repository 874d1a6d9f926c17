#include "persistence/records.hpp"

#include <array>

namespace memlend::store {

namespace {

constexpr std::array<std::string_view, 5> lease_state_names{"reserving", "active", "draining", "released", "failed"};
constexpr std::array<std::string_view, 4> mirror_state_names{"writing", "serving", "deleted", "failed"};

}  // namespace

std::string_view to_string(LeaseState s) { return lease_state_names[static_cast<std::size_t>(s)]; }
std::string_view to_string(MirrorState s) { return mirror_state_names[static_cast<std::size_t>(s)]; }

std::optional<LeaseState> parse_lease_state(std::string_view s) {
  for (std::size_t i = 0; i < lease_state_names.size(); ++i)
    if (lease_state_names[i] == s) return static_cast<LeaseState>(i);
  return std::nullopt;
}

std::optional<MirrorState> parse_mirror_state(std::string_view s) {
  for (std::size_t i = 0; i < mirror_state_names.size(); ++i)
    if (mirror_state_names[i] == s) return static_cast<MirrorState>(i);
  return std::nullopt;
}

const std::vector<std::string_view>& event_names() {
  static const std::vector<std::string_view> names{
      "need_detected",      "lease_granted", "lease_released",   "mirror_created",
      "mirror_deleted",     "vm_migrated",   "migration_recommended", "donor_failed",
      "failover_to_mirror", "lease_rehomed", "memory_reclaimed", "unsatisfied",
      "mirror_failed",      "memory_lost"};
  return names;
}

}  // namespace memlend::store
