-- Links linkfresh keeps fresh: one row per MoneyKit link, whoever manages it.
-- Times are unix milliseconds (BIGINT) so window arithmetic is integer math.
-- Links are never deleted: a link that leaves the config is marked removed
-- and keeps its history.
-- WITHOUT ROWID clusters the table by id, so load_links pages through it in
-- key order without a second index.
CREATE TABLE links (
    id            TEXT    NOT NULL PRIMARY KEY,
    products      INTEGER NOT NULL,                 -- ProductSet bitmask
    cadence       TEXT,                             -- caller's opaque JSON
    source        TEXT    NOT NULL,                 -- config | api | discovery
    state         TEXT    NOT NULL DEFAULT 'active',
    reason        TEXT,
    removed       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    backoff_until BIGINT,
    failures      INTEGER NOT NULL DEFAULT 0,
    change_seq    BIGINT  NOT NULL DEFAULT 0        -- see change_counter
) WITHOUT ROWID;
