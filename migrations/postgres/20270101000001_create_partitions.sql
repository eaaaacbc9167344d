-- Partitioned ownership among replicas (issue 16; see "Several replicas" in
-- src/store/mod.rs). fleet_settings: the partition count, fixed per database
-- by the first replica. replicas: who is alive, heartbeats and lease expiry
-- in the database's clock (unix ms of now()), never a replica's own clock.
-- partitions: one row per partition, its holder, the fencing epoch (bumped by
-- every acquisition) and the holder's lease, also in the database's clock;
-- freed_at: when the lease of a holder that lapsed ended (NULL when it was
-- released by a holder that had already shrunk its share), from which the next
-- holder counts it toward its share of the fleet's limits (src/daemon/share.rs).
CREATE TABLE fleet_settings (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    partitions INTEGER NOT NULL
);
CREATE TABLE replicas (
    id           TEXT   NOT NULL PRIMARY KEY,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    lease_until  BIGINT NOT NULL,
    rebalances   BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE partitions (
    part        INTEGER NOT NULL PRIMARY KEY,
    holder      TEXT,
    epoch       BIGINT  NOT NULL DEFAULT 0,
    lease_until BIGINT,
    acquired_at BIGINT,
    freed_at    BIGINT
);
