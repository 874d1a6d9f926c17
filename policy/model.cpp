#include "policy/model.hpp"

#include <array>
#include <numeric>
#include <utility>

namespace memlend::policy {

namespace {

template <class E, std::size_t N>
std::optional<E> lookup(const std::array<std::pair<E, std::string_view>, N>& table, std::string_view s) {
  for (const auto& [value, name] : table)
    if (name == s) return value;
  return std::nullopt;
}

template <class E, std::size_t N>
std::string_view name_of(const std::array<std::pair<E, std::string_view>, N>& table, E e) {
  for (const auto& [value, name] : table)
    if (value == e) return name;
  return "?";
}

constexpr std::array<std::pair<Heuristic, std::string_view>, 6> heuristics{{
    {Heuristic::first_fit, "first_fit"},
    {Heuristic::best_fit, "best_fit"},
    {Heuristic::worst_fit, "worst_fit"},
    {Heuristic::cosine, "cosine"},
    {Heuristic::l2_diff, "l2_diff"},
    {Heuristic::l2_ratio, "l2_ratio"},
}};
constexpr std::array<std::pair<Order, std::string_view>, 3> orders{{
    {Order::listed, "listed"},
    {Order::ffd_prod, "ffd_prod"},
    {Order::ffd_sum, "ffd_sum"},
}};
constexpr std::array<std::pair<DonorMode, std::string_view>, 2> donor_modes{{
    {DonorMode::fewest, "fewest"},
    {DonorMode::spread, "spread"},
}};
constexpr std::array<std::pair<DecisionKind, std::string_view>, 5> kinds{{
    {DecisionKind::none, "none"},
    {DecisionKind::remote_memory, "remote_memory"},
    {DecisionKind::migrate, "migrate"},
    {DecisionKind::recommend_migration, "recommend_migration"},
    {DecisionKind::unsatisfied, "unsatisfied"},
}};

}  // namespace

std::string_view to_string(Heuristic h) { return name_of(heuristics, h); }
std::string_view to_string(Order o) { return name_of(orders, o); }
std::string_view to_string(DonorMode d) { return name_of(donor_modes, d); }
std::string_view to_string(DecisionKind k) { return name_of(kinds, k); }
std::optional<Heuristic> parse_heuristic(std::string_view s) { return lookup(heuristics, s); }
std::optional<Order> parse_order(std::string_view s) { return lookup(orders, s); }
std::optional<DonorMode> parse_donor_mode(std::string_view s) { return lookup(donor_modes, s); }

std::optional<HostId> Scenario::find_host(std::string_view name) const {
  for (HostId h = 0; h < hosts.size(); ++h)
    if (hosts[h].name == name) return h;
  return std::nullopt;
}

std::optional<VmId> Scenario::find_vm(std::string_view name) const {
  for (VmId v = 0; v < vms.size(); ++v)
    if (vms[v].name == name) return v;
  return std::nullopt;
}

std::int64_t buffer_kib_per_lease(const Settings& s) {
  return std::lcm(s.page_size_kib, s.rdma_block_kib) * s.buffer_blocks;
}

}  // namespace memlend::policy
