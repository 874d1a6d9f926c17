#include "persistence/schema.hpp"

#include <string>

namespace memlend::store {

namespace {

// Version 1. Units are in the column names (_mib, _mhz, _bytes, _t_s for
// scenario seconds, _unix_ms for wall-clock milliseconds since 1970 UTC).
// README.md ("Store") documents every view column.
// Views that later versions recreate: one text for both.
const char* const view_vm_memory = R"sql(
CREATE VIEW v_vm_memory AS
SELECT v.id, v.name, h.name AS host, v.memory_mib AS demand_mib, v.cpu_mhz AS demand_mhz, v.local_mib,
       COALESCE(l.borrowed_mib, 0) AS borrowed_mib,
       COALESCE(l.reserving_mib, 0) AS reserving_mib,
       COALESCE(l.failed_mib, 0) AS from_mirror_mib,
       COALESCE(l.leases, 0) AS leases,
       MAX(0, v.memory_mib - v.local_mib - COALESCE(l.borrowed_mib, 0) - COALESCE(l.failed_mib, 0)) AS short_mib,
       (m.bytes + 1048575) / 1048576 AS mirror_mib,
       m.state AS mirror_state,
       v.remote_since_s,
       t.name AS migrating_to,
       rt.name AS recommended_target,
       v.updated_t_s
FROM vms v
JOIN hosts h ON h.id = v.host
LEFT JOIN (SELECT vm,
                  SUM(CASE WHEN state IN ('active', 'draining') THEN mib ELSE 0 END) AS borrowed_mib,
                  SUM(CASE WHEN state = 'reserving' THEN mib ELSE 0 END) AS reserving_mib,
                  SUM(CASE WHEN state = 'failed' THEN mib ELSE 0 END) AS failed_mib,
                  COUNT(*) AS leases
           FROM leases WHERE state <> 'released' GROUP BY vm) l ON l.vm = v.id
LEFT JOIN mirrors m ON m.vm = v.id AND m.state <> 'deleted'
LEFT JOIN hosts t ON t.id = v.migrating_to
LEFT JOIN recommendations r ON r.vm = v.id
LEFT JOIN hosts rt ON rt.id = r.target
ORDER BY v.id;
)sql";

const char* const view_mirrors = R"sql(
CREATE VIEW v_mirrors AS
SELECT v.name AS vm, m.path, (m.bytes + 1048575) / 1048576 AS mib, m.bytes, m.watermark_bytes, m.state,
       m.updated_t_s,
       strftime('%Y-%m-%dT%H:%M:%SZ', m.updated_unix_ms / 1000, 'unixepoch') AS updated_at
FROM mirrors m JOIN vms v ON v.id = m.vm
ORDER BY m.vm;
)sql";

const std::string v1 = R"sql(
CREATE TABLE schema_history (
  version INTEGER PRIMARY KEY,
  summary TEXT NOT NULL,
  applied_unix_ms INTEGER NOT NULL
);

CREATE TABLE controller (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  clock_s REAL NOT NULL DEFAULT 0,
  scenario TEXT NOT NULL DEFAULT '',
  next_lease_id INTEGER NOT NULL DEFAULT 1 CHECK (next_lease_id >= 1),
  updated_unix_ms INTEGER NOT NULL DEFAULT 0
);
INSERT INTO controller (id) VALUES (1);

CREATE TABLE hosts (
  id INTEGER PRIMARY KEY CHECK (id >= 0),
  name TEXT NOT NULL UNIQUE,
  memory_mib INTEGER NOT NULL CHECK (memory_mib >= 0),
  cpu_mhz INTEGER NOT NULL CHECK (cpu_mhz >= 0),
  reserved_mib INTEGER NOT NULL DEFAULT 0 CHECK (reserved_mib >= 0),
  rdma INTEGER NOT NULL DEFAULT 1 CHECK (rdma IN (0, 1)),
  data_path INTEGER NOT NULL DEFAULT 1 CHECK (data_path IN (0, 1)),
  up INTEGER NOT NULL DEFAULT 1 CHECK (up IN (0, 1)),
  fabric TEXT NOT NULL DEFAULT '',
  used_mib INTEGER NOT NULL DEFAULT 0 CHECK (used_mib >= 0),
  used_mhz INTEGER NOT NULL DEFAULT 0 CHECK (used_mhz >= 0),
  actor_state TEXT NOT NULL DEFAULT '',
  updated_t_s REAL NOT NULL DEFAULT 0,
  updated_unix_ms INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE vms (
  id INTEGER PRIMARY KEY CHECK (id >= 0),
  name TEXT NOT NULL UNIQUE,
  host INTEGER NOT NULL REFERENCES hosts (id),
  memory_mib INTEGER NOT NULL CHECK (memory_mib >= 0),
  cpu_mhz INTEGER NOT NULL CHECK (cpu_mhz >= 0),
  local_mib INTEGER NOT NULL DEFAULT 0 CHECK (local_mib >= 0),
  remote_since_s REAL,
  migrating_to INTEGER REFERENCES hosts (id),
  actor_state TEXT NOT NULL DEFAULT '',
  updated_t_s REAL NOT NULL DEFAULT 0,
  updated_unix_ms INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE lease_states (
  name TEXT PRIMARY KEY,
  meaning TEXT NOT NULL
);
INSERT INTO lease_states VALUES
  ('reserving', 'phase one: the donor holds the memory for this lease; nothing is attached yet'),
  ('active', 'the VM uses the donor''s memory through its local buffer'),
  ('draining', 'being given back: the VM''s pages are written back before the donor reclaims'),
  ('released', 'ended: the donor has its memory back (kept as history)'),
  ('failed', 'the donor is gone; the VM reads this memory from its mirror until it is re-homed');

-- The steps a lease may take; '' is "not yet stored". The store refuses any other.
CREATE TABLE lease_transitions (
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL REFERENCES lease_states (name),
  PRIMARY KEY (from_state, to_state)
);
INSERT INTO lease_transitions VALUES
  ('', 'reserving'), ('', 'active'),
  ('reserving', 'reserving'), ('reserving', 'active'), ('reserving', 'released'), ('reserving', 'failed'),
  ('active', 'active'), ('active', 'draining'), ('active', 'released'), ('active', 'failed'),
  ('draining', 'draining'), ('draining', 'released'), ('draining', 'failed'),
  ('failed', 'failed'), ('failed', 'released'),
  ('released', 'released');

CREATE TABLE leases (
  id INTEGER PRIMARY KEY CHECK (id > 0),
  vm INTEGER NOT NULL REFERENCES vms (id),
  donor INTEGER NOT NULL REFERENCES hosts (id),
  recipient INTEGER NOT NULL REFERENCES hosts (id),
  mib INTEGER NOT NULL CHECK (mib > 0),
  state TEXT NOT NULL REFERENCES lease_states (name),
  transport TEXT NOT NULL CHECK (transport IN ('rdma', 'tcp')),
  datapath_key TEXT NOT NULL DEFAULT '',
  epoch INTEGER NOT NULL CHECK (epoch >= 0),
  created_t_s REAL NOT NULL,
  updated_t_s REAL NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  updated_unix_ms INTEGER NOT NULL,
  CHECK (donor <> recipient)
);
CREATE INDEX leases_by_vm ON leases (vm);
CREATE INDEX leases_by_donor ON leases (donor);
CREATE INDEX leases_live ON leases (id) WHERE state <> 'released';

CREATE TABLE mirrors (
  vm INTEGER PRIMARY KEY REFERENCES vms (id),
  path TEXT NOT NULL,
  bytes INTEGER NOT NULL CHECK (bytes >= 0),
  watermark_bytes INTEGER NOT NULL DEFAULT 0 CHECK (watermark_bytes BETWEEN 0 AND bytes),
  state TEXT NOT NULL CHECK (state IN ('writing', 'serving', 'deleted')),
  updated_t_s REAL NOT NULL,
  updated_unix_ms INTEGER NOT NULL
);

CREATE TABLE recommendations (
  vm INTEGER PRIMARY KEY REFERENCES vms (id),
  target INTEGER NOT NULL REFERENCES hosts (id),
  reason TEXT NOT NULL,
  t_s REAL NOT NULL,
  updated_unix_ms INTEGER NOT NULL
);

CREATE TABLE event_kinds (
  name TEXT PRIMARY KEY,
  meaning TEXT NOT NULL
);
INSERT INTO event_kinds VALUES
  ('need_detected', 'a VM needed more for detect_samples samples in a row'),
  ('lease_granted', 'a donor lends a VM memory'),
  ('lease_released', 'a VM gives a lease back'),
  ('mirror_created', 'the VM''s mirror file appears'),
  ('mirror_deleted', 'the VM''s mirror file goes'),
  ('vm_migrated', 'a VM short of CPU moved'),
  ('migration_recommended', 'a VM has used its main donor long enough and the donor can hold it'),
  ('donor_failed', 'a host that lends went down'),
  ('failover_to_mirror', 'a VM reads what a failed donor lent from its mirror'),
  ('lease_rehomed', 'memory of a failed donor is lent by a new donor, filled from the mirror'),
  ('memory_reclaimed', 'a recipient went down; its donor takes its memory back'),
  ('unsatisfied', 'nothing fits; nothing was done');

-- The --events-out log, line for line; seq numbers it from 1 without gaps.
CREATE TABLE events (
  seq INTEGER PRIMARY KEY,
  t_s REAL NOT NULL,
  event TEXT NOT NULL REFERENCES event_kinds (name),
  vm TEXT,
  host TEXT,
  donor TEXT,
  mib INTEGER,
  recorded_unix_ms INTEGER NOT NULL
);
CREATE TRIGGER events_are_append_only_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER events_are_append_only_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

-- Support views (README.md, "Store").
CREATE VIEW v_host_lending AS
SELECT h.id, h.name, h.up, h.data_path, h.rdma, h.fabric,
       h.memory_mib, h.cpu_mhz, h.reserved_mib, h.used_mib, h.used_mhz,
       COALESCE(o.lent_mib, 0) AS lent_mib,
       COALESCE(o.reserving_mib, 0) AS reserving_mib,
       COALESCE(o.failed_mib, 0) AS failed_mib,
       COALESCE(o.leases, 0) AS leases_out,
       COALESCE(i.borrowed_mib, 0) AS borrowed_mib,
       COALESCE(i.leases, 0) AS leases_in,
       h.memory_mib - h.used_mib - COALESCE(o.lent_mib, 0) - COALESCE(o.reserving_mib, 0) AS free_mib,
       CASE WHEN h.up AND h.data_path
            THEN MAX(0, h.memory_mib - h.used_mib - COALESCE(o.lent_mib, 0) - COALESCE(o.reserving_mib, 0)
                        - h.reserved_mib)
            ELSE 0 END AS lendable_mib,
       h.updated_t_s
FROM hosts h
LEFT JOIN (SELECT donor,
                  SUM(CASE WHEN state IN ('active', 'draining') THEN mib ELSE 0 END) AS lent_mib,
                  SUM(CASE WHEN state = 'reserving' THEN mib ELSE 0 END) AS reserving_mib,
                  SUM(CASE WHEN state = 'failed' THEN mib ELSE 0 END) AS failed_mib,
                  COUNT(*) AS leases
           FROM leases WHERE state <> 'released' GROUP BY donor) o ON o.donor = h.id
LEFT JOIN (SELECT recipient, SUM(mib) AS borrowed_mib, COUNT(*) AS leases
           FROM leases WHERE state IN ('active', 'draining') GROUP BY recipient) i ON i.recipient = h.id
ORDER BY h.id;

)sql" + std::string(view_vm_memory) + R"sql(
CREATE VIEW v_leases AS
SELECT l.id, v.name AS vm, d.name AS donor, r.name AS recipient, l.mib, l.mib * 1048576 AS bytes,
       l.state, l.transport, l.datapath_key, l.epoch, l.created_t_s, l.updated_t_s,
       strftime('%Y-%m-%dT%H:%M:%SZ', l.created_unix_ms / 1000, 'unixepoch') AS created_at,
       strftime('%Y-%m-%dT%H:%M:%SZ', l.updated_unix_ms / 1000, 'unixepoch') AS updated_at
FROM leases l
JOIN vms v ON v.id = l.vm
JOIN hosts d ON d.id = l.donor
JOIN hosts r ON r.id = l.recipient
ORDER BY l.id;

)sql" + std::string(view_mirrors) + R"sql(
CREATE VIEW v_recommendations AS
SELECT v.name AS vm, t.name AS target, r.reason, r.t_s,
       strftime('%Y-%m-%dT%H:%M:%SZ', r.updated_unix_ms / 1000, 'unixepoch') AS recorded_at
FROM recommendations r JOIN vms v ON v.id = r.vm JOIN hosts t ON t.id = r.target
ORDER BY r.vm;

CREATE VIEW v_recent_events AS
SELECT * FROM (
  SELECT seq, t_s, event, vm, host, donor, mib,
         strftime('%Y-%m-%dT%H:%M:%SZ', recorded_unix_ms / 1000, 'unixepoch') AS recorded_at
  FROM events ORDER BY seq DESC LIMIT 100)
ORDER BY seq;

CREATE VIEW v_controller AS
SELECT (SELECT MAX(version) FROM schema_history) AS schema_version,
       c.clock_s, c.scenario, c.next_lease_id,
       (SELECT COALESCE(MAX(seq), 0) FROM events) AS events,
       (SELECT COUNT(*) FROM leases WHERE state <> 'released') AS live_leases,
       strftime('%Y-%m-%dT%H:%M:%SZ', c.updated_unix_ms / 1000, 'unixepoch') AS updated_at
FROM controller c;
)sql";

// Version 2. A lease's secret opens the donor's memory to whoever holds it,
// and a database is copied into support bundles: the store keeps no secret.
// A restarted controller derives each lease's secret again from its donor's
// pool secret, which the donor's agent tells it when it joins. The key
// column keeps where the lease is (address, id in the pool, epoch); a key of
// any other form is of no use to this code and may hold a secret, so it goes.
// secure_delete overwrites what an UPDATE frees instead of leaving the old
// bytes in the file's free space.
const char* const v2 = R"sql(
PRAGMA secure_delete = ON;
UPDATE leases SET datapath_key =
  CASE WHEN json_valid(datapath_key) AND json_type(datapath_key) = 'object'
       THEN json_remove(datapath_key, '$.secret')
       ELSE '' END
WHERE datapath_key <> '';

-- The JSON functions may not run in a trigger under trusted_schema = OFF
-- (they are not marked innocuous): a key that mentions a secret is refused.
CREATE TRIGGER leases_keep_no_secret_insert BEFORE INSERT ON leases
WHEN instr(NEW.datapath_key, 'secret') > 0
BEGIN SELECT RAISE(ABORT, 'a lease''s secret is never stored'); END;
CREATE TRIGGER leases_keep_no_secret_update BEFORE UPDATE OF datapath_key ON leases
WHEN instr(NEW.datapath_key, 'secret') > 0
BEGIN SELECT RAISE(ABORT, 'a lease''s secret is never stored'); END;

-- Support output shows no access to the data path at all.
DROP VIEW v_leases;
CREATE VIEW v_leases AS
SELECT l.id, v.name AS vm, d.name AS donor, r.name AS recipient, l.mib, l.mib * 1048576 AS bytes,
       l.state, l.transport, l.epoch, l.created_t_s, l.updated_t_s,
       strftime('%Y-%m-%dT%H:%M:%SZ', l.created_unix_ms / 1000, 'unixepoch') AS created_at,
       strftime('%Y-%m-%dT%H:%M:%SZ', l.updated_unix_ms / 1000, 'unixepoch') AS updated_at
FROM leases l
JOIN vms v ON v.id = l.vm
JOIN hosts d ON d.id = l.donor
JOIN hosts r ON r.id = l.recipient
ORDER BY l.id;
)sql";

}  // namespace

// Version 3: a mirror the data path could not write is 'failed' (it is no
// copy); the events that say so. SQLite changes a CHECK only by rebuilding
// the table, and the views that read it go and come back around that.
const std::string v3 = std::string(R"sql(
DROP VIEW v_vm_memory;
DROP VIEW v_mirrors;
CREATE TABLE mirrors_v2 (
  vm INTEGER PRIMARY KEY REFERENCES vms (id),
  path TEXT NOT NULL,
  bytes INTEGER NOT NULL CHECK (bytes >= 0),
  watermark_bytes INTEGER NOT NULL DEFAULT 0 CHECK (watermark_bytes BETWEEN 0 AND bytes),
  state TEXT NOT NULL CHECK (state IN ('writing', 'serving', 'failed', 'deleted')),
  updated_t_s REAL NOT NULL,
  updated_unix_ms INTEGER NOT NULL
);
INSERT INTO mirrors_v2 SELECT vm, path, bytes, watermark_bytes, state, updated_t_s, updated_unix_ms FROM mirrors;
DROP TABLE mirrors;
ALTER TABLE mirrors_v2 RENAME TO mirrors;
INSERT INTO event_kinds VALUES
  ('mirror_failed', 'the data path could not write a VM''s mirror: it is no copy any more'),
  ('memory_lost', 'a donor went down while the VM''s mirror was failed: what it lent is gone');
)sql") + view_vm_memory + view_mirrors;

// Version 4: each event a decision made keeps that decision's reason, and
// the oldest events may go (retention; persistence/retention.cpp). Only a
// prefix of the log is ever dropped, through event_retention's mark, so what
// is kept stays numbered without a gap. The index finds a VM's decisions
// (`memlend why`, v_vm_decisions) without reading the whole log.
const char* const v4 = R"sql(
ALTER TABLE events ADD COLUMN reason TEXT;
CREATE INDEX events_decisions_by_vm ON events (vm, seq) WHERE reason IS NOT NULL;

CREATE TABLE event_retention (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  dropped_through INTEGER NOT NULL DEFAULT 0 CHECK (dropped_through >= 0),
  updated_unix_ms INTEGER NOT NULL DEFAULT 0
);
INSERT INTO event_retention (id) VALUES (1);
CREATE TRIGGER event_retention_goes_forward BEFORE UPDATE OF dropped_through ON event_retention
WHEN NEW.dropped_through < OLD.dropped_through
BEGIN SELECT RAISE(ABORT, 'dropped events do not come back'); END;
DROP TRIGGER events_are_append_only_delete;
CREATE TRIGGER events_drop_only_the_oldest BEFORE DELETE ON events
WHEN OLD.seq > (SELECT dropped_through FROM event_retention WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: only retention drops its oldest events'); END;

DROP VIEW v_recent_events;
CREATE VIEW v_recent_events AS
SELECT * FROM (
  SELECT seq, t_s, event, vm, host, donor, mib,
         strftime('%Y-%m-%dT%H:%M:%SZ', recorded_unix_ms / 1000, 'unixepoch') AS recorded_at, reason
  FROM events ORDER BY seq DESC LIMIT 100)
ORDER BY seq;

CREATE VIEW v_decisions AS
SELECT seq, t_s, event, vm, host, donor, mib, reason,
       strftime('%Y-%m-%dT%H:%M:%SZ', recorded_unix_ms / 1000, 'unixepoch') AS recorded_at
FROM events WHERE reason IS NOT NULL;

CREATE VIEW v_vm_decisions AS
SELECT v.id, v.name AS vm, e.event AS last_decision, e.reason, e.t_s, e.seq,
       strftime('%Y-%m-%dT%H:%M:%SZ', e.recorded_unix_ms / 1000, 'unixepoch') AS recorded_at
FROM vms v
LEFT JOIN events e ON e.seq = (SELECT MAX(seq) FROM events WHERE vm = v.name AND reason IS NOT NULL)
ORDER BY v.id;
)sql";

// Version 5. The leadership epoch: each controller that starts on the store
// (a restart, or a new leader of a replicated store) raises it in its first
// transaction, and agents refuse a controller whose epoch is below one they
// have seen. It never goes down.
const char* const v5 = R"sql(
ALTER TABLE controller ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
CREATE TRIGGER controller_epoch_rises BEFORE UPDATE OF epoch ON controller
WHEN NEW.epoch <= OLD.epoch
BEGIN SELECT RAISE(ABORT, 'the leadership epoch only rises'); END;

DROP VIEW v_controller;
CREATE VIEW v_controller AS
SELECT (SELECT MAX(version) FROM schema_history) AS schema_version,
       c.clock_s, c.scenario, c.next_lease_id,
       (SELECT COALESCE(MAX(seq), 0) FROM events) AS events,
       (SELECT COUNT(*) FROM leases WHERE state <> 'released') AS live_leases,
       strftime('%Y-%m-%dT%H:%M:%SZ', c.updated_unix_ms / 1000, 'unixepoch') AS updated_at,
       c.epoch
FROM controller c;
)sql";

const std::vector<Migration>& builtin_migrations() {
  static const std::vector<Migration> all{
      {1, "hosts, VMs, leases, mirrors, recommendations, event log, clock, support views", v1},
      {2, "no lease secret in the store or the support views", v2},
      {3, "mirrors that could not be written: state failed, events mirror_failed and memory_lost", v3},
      {4, "each decision's reason with its event; retention may drop the oldest events", v4},
      {5, "the leadership epoch, raised by each controller that starts", v5},
  };
  return all;
}

}  // namespace memlend::store
