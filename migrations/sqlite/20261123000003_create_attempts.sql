-- One row per POST: the intent is written (and committed) before the request
-- is sent, the outcome columns after the answer. prev_requested holds each
-- product's last_requested_at before the intent (JSON object, ms or null) so
-- a 429 can put them back.
-- AUTOINCREMENT: attempt ids are never reused, even after pruning the newest.
CREATE TABLE attempts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    link_id        TEXT    NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    products       INTEGER NOT NULL,                -- ProductSet bitmask
    intent_at      BIGINT  NOT NULL,
    prev_requested TEXT    NOT NULL,
    outcome        TEXT,                            -- label; NULL while in flight or after a crash
    status         INTEGER,
    detail         TEXT,
    finished_at    BIGINT
);
