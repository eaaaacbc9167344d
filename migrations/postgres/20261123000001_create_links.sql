-- Links linkfresh keeps fresh: one row per MoneyKit link, whoever manages it.
-- Times are unix milliseconds (BIGINT) so window arithmetic is integer math.
-- Links are never deleted: a link that leaves the config is marked removed
-- and keeps its history.
-- COLLATE "C": link ids are opaque ASCII; byte order matches SQLite and Rust
-- and keeps the primary key index cheap to range-scan.
CREATE TABLE links (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
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
);
