// Every statement the store runs, by its Sql id: prepared at open on a local
// file, sent as text to a replicated store's leader.
#include "persistence/store_impl.hpp"

namespace memlend::store {

const std::vector<StatementText>& statement_texts() {
  static const std::vector<StatementText> texts = {
      {Sql::begin, "BEGIN IMMEDIATE", true},
      {Sql::commit, "COMMIT", true},
      {Sql::rollback, "ROLLBACK", true},
      {Sql::savepoint, "SAVEPOINT batch", true},
      {Sql::release, "RELEASE batch", true},
      {Sql::rollback_to, "ROLLBACK TO batch", true},
      {Sql::host_name, "SELECT name FROM hosts WHERE id = ?1", true},
      {Sql::host_upsert,
       "INSERT INTO hosts (id, name, memory_mib, cpu_mhz, reserved_mib, rdma, data_path, up, fabric, used_mib, "
       "used_mhz, actor_state, updated_t_s, updated_unix_ms) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) "
       "ON CONFLICT (id) DO UPDATE SET memory_mib = excluded.memory_mib, cpu_mhz = excluded.cpu_mhz, "
       "reserved_mib = excluded.reserved_mib, rdma = excluded.rdma, data_path = excluded.data_path, "
       "up = excluded.up, fabric = excluded.fabric, used_mib = excluded.used_mib, used_mhz = excluded.used_mhz, "
       "actor_state = excluded.actor_state, updated_t_s = excluded.updated_t_s, "
       "updated_unix_ms = excluded.updated_unix_ms",
       true},
      {Sql::vm_name, "SELECT name FROM vms WHERE id = ?1", true},
      {Sql::vm_upsert,
       "INSERT INTO vms (id, name, host, memory_mib, cpu_mhz, local_mib, remote_since_s, migrating_to, "
       "actor_state, updated_t_s, updated_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
       "ON CONFLICT (id) DO UPDATE SET host = excluded.host, memory_mib = excluded.memory_mib, "
       "cpu_mhz = excluded.cpu_mhz, local_mib = excluded.local_mib, remote_since_s = excluded.remote_since_s, "
       "migrating_to = excluded.migrating_to, actor_state = excluded.actor_state, "
       "updated_t_s = excluded.updated_t_s, updated_unix_ms = excluded.updated_unix_ms",
       true},
      {Sql::lease_get, "SELECT vm, donor, state, epoch FROM leases WHERE id = ?1", true},
      {Sql::lease_insert,
       "INSERT INTO leases (id, vm, donor, recipient, mib, state, transport, datapath_key, epoch, created_t_s, "
       "updated_t_s, created_unix_ms, updated_unix_ms) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?11)",
       true},
      {Sql::lease_update,
       "UPDATE leases SET recipient = ?2, mib = ?3, state = ?4, transport = ?5, datapath_key = ?6, epoch = ?7, "
       "updated_t_s = ?8, updated_unix_ms = ?9 WHERE id = ?1",
       true},
      {Sql::mirror_upsert,
       "INSERT INTO mirrors (vm, path, bytes, watermark_bytes, state, updated_t_s, updated_unix_ms) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
       "ON CONFLICT (vm) DO UPDATE SET path = excluded.path, bytes = excluded.bytes, "
       "watermark_bytes = excluded.watermark_bytes, state = excluded.state, updated_t_s = excluded.updated_t_s, "
       "updated_unix_ms = excluded.updated_unix_ms",
       true},
      {Sql::recommendation_upsert,
       "INSERT INTO recommendations (vm, target, reason, t_s, updated_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
       "ON CONFLICT (vm) DO UPDATE SET target = excluded.target, reason = excluded.reason, t_s = excluded.t_s, "
       "updated_unix_ms = excluded.updated_unix_ms",
       true},
      {Sql::recommendation_delete, "DELETE FROM recommendations WHERE vm = ?1", true},
      {Sql::event_insert,
       "INSERT INTO events (t_s, event, vm, host, donor, mib, recorded_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
       true},
      {Sql::event_insert,
       "INSERT INTO events (t_s, event, vm, host, donor, mib, recorded_unix_ms, reason) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
       true, 4},
      {Sql::events_bounds, "SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM events", true, 4},
      {Sql::events_first_recent,
       "SELECT seq FROM events WHERE seq BETWEEN ?1 AND ?2 AND recorded_unix_ms >= ?3 ORDER BY seq LIMIT 1", true, 4},
      {Sql::retention_mark,
       "UPDATE event_retention SET dropped_through = ?1, updated_unix_ms = ?2 WHERE id = 1 AND dropped_through < ?1",
       true, 4},
      {Sql::events_drop, "DELETE FROM events WHERE seq <= ?1", true, 4},
      {Sql::scenario_set, "UPDATE controller SET scenario = ?1 WHERE id = 1", true},
      {Sql::controller_advance,
       "UPDATE controller SET clock_s = MAX(clock_s, ?1), next_lease_id = MAX(next_lease_id, ?2), "
       "updated_unix_ms = ?3 WHERE id = 1",
       true},
      {Sql::read_begin, "BEGIN DEFERRED", false},
      {Sql::read_end, "COMMIT", false},
      {Sql::load_controller, "SELECT clock_s, scenario, next_lease_id FROM controller WHERE id = 1", false},
      {Sql::load_controller, "SELECT clock_s, scenario, next_lease_id, epoch FROM controller WHERE id = 1", false, 5},
      {Sql::epoch_set, "UPDATE controller SET epoch = ?1 WHERE id = 1", true, 5},
      {Sql::load_last_seq, "SELECT COALESCE(MAX(seq), 0) FROM events", false},
      {Sql::load_hosts,
       "SELECT id, name, memory_mib, cpu_mhz, reserved_mib, rdma, data_path, up, fabric, used_mib, used_mhz, "
       "actor_state, updated_t_s FROM hosts ORDER BY id",
       false},
      {Sql::load_vms,
       "SELECT id, name, host, memory_mib, cpu_mhz, local_mib, remote_since_s, migrating_to, actor_state, "
       "updated_t_s FROM vms ORDER BY id",
       false},
      {Sql::load_leases,
       "SELECT id, vm, donor, recipient, mib, state, transport, datapath_key, epoch, created_t_s, updated_t_s "
       "FROM leases WHERE state <> 'released' ORDER BY id",
       false},
      {Sql::load_mirrors,
       "SELECT vm, path, bytes, watermark_bytes, state, updated_t_s FROM mirrors WHERE state <> 'deleted' "
       "ORDER BY vm",
       false},
      {Sql::load_recommendations, "SELECT vm, target, reason, t_s FROM recommendations ORDER BY vm", false},
      {Sql::load_events,
       "SELECT seq, t_s, event, vm, host, donor, mib, NULL FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2", false},
      {Sql::load_events,
       "SELECT seq, t_s, event, vm, host, donor, mib, reason FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2", false,
       4},
      // Newest first, so that a reader stops at the first event older than it wants.
      {Sql::events_newest_first,
       "SELECT seq, t_s, event, vm, host, donor, mib, "
       "strftime('%Y-%m-%dT%H:%M:%SZ', recorded_unix_ms / 1000, 'unixepoch') AS recorded_at, NULL AS reason, "
       "recorded_unix_ms FROM events ORDER BY seq DESC",
       false},
      {Sql::events_newest_first,
       "SELECT seq, t_s, event, vm, host, donor, mib, "
       "strftime('%Y-%m-%dT%H:%M:%SZ', recorded_unix_ms / 1000, 'unixepoch') AS recorded_at, reason, "
       "recorded_unix_ms FROM events ORDER BY seq DESC",
       false, 4},
      {Sql::vm_known, "SELECT 1 FROM vms WHERE name = ?1", false},
      // One more than an error lists, so that it can say there are more.
      {Sql::vm_names, "SELECT name FROM vms ORDER BY id LIMIT 11", false},
      {Sql::decisions_of_vm, "SELECT * FROM v_decisions WHERE vm = ?1 ORDER BY seq DESC LIMIT ?2", false, 4},
      {Sql::view_hosts, "SELECT * FROM v_host_lending", false},
      {Sql::view_vms, "SELECT * FROM v_vm_memory", false},
      {Sql::view_leases, "SELECT * FROM v_leases", false},
      {Sql::view_mirrors, "SELECT * FROM v_mirrors", false},
      {Sql::view_recommendations, "SELECT * FROM v_recommendations", false},
      {Sql::view_recent_events, "SELECT * FROM v_recent_events", false},
      {Sql::view_controller, "SELECT * FROM v_controller", false},
      {Sql::view_vm_decisions, "SELECT * FROM v_vm_decisions", false, 4},
  };
  return texts;
}

std::string quoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::string migration_script(const std::vector<Migration>& migrations, std::int64_t from, std::int64_t& to) {
  std::string script;
  to = from;
  for (const auto& m : migrations) {
    if (m.to_version <= from) continue;
    script += m.sql + ";\n";
    script += "INSERT INTO schema_history (version, summary, applied_unix_ms) VALUES (" +
              std::to_string(m.to_version) + ", " + quoted(m.summary) + ", " + std::to_string(unix_ms_now()) + ");\n";
    to = m.to_version;
  }
  if (to == from) return script;
  if (from == 0) script += "PRAGMA application_id = " + std::to_string(application_id) + ";\n";
  script += "PRAGMA user_version = " + std::to_string(to) + ";\n";
  return script;
}

}  // namespace memlend::store
