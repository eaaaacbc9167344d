-- The outbox of outbound events to the owning app (issue 18). A row is
-- written in the same transaction as the state change that causes it, so a
-- crash can neither lose an event nor emit one for a change that did not
-- commit; the delivery task sends the oldest pending row of each link (seq
-- order), records the answer and retries with backoff until retry_for.
-- id is the stable webhook-id (the same on every retry, so receivers dedupe).
-- status: pending | delivered | failed. lease_owner/lease_until: the replica
-- delivering it now (several replicas on PostgreSQL deliver each row once).
-- No foreign key to links: events outlive a removed link.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT    NOT NULL UNIQUE,
    link_id         TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    product         TEXT,
    created_at      BIGINT  NOT NULL,
    payload         TEXT    NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT  NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT,
    finished_at     BIGINT
);
