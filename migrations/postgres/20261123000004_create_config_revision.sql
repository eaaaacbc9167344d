-- The last configuration revision synced, so an unchanged config skips the
-- full diff of (up to a million) links at start and on reload.
CREATE TABLE config_revision (
    id        INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    revision  TEXT    NOT NULL,
    synced_at BIGINT  NOT NULL
);
