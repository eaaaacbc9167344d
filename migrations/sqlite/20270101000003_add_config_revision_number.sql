-- The config's own revision number (the optional top-level `revision` key),
-- which orders the versions of a rolling update: a sync with a lower number
-- than the stored one is refused, so an old replica never overwrites the link
-- set a newer one wrote (issue 16).
ALTER TABLE config_revision ADD COLUMN number BIGINT NOT NULL DEFAULT 0;
