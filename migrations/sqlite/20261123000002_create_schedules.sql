-- Per product of a link: the times the policy needs to respect MoneyKit's
-- windows. Rows of products dropped from a link are kept (with their times)
-- so that adding the product back cannot cause an early refresh.
CREATE TABLE schedules (
    link_id             TEXT    NOT NULL REFERENCES links (id) ON DELETE CASCADE,
    product             TEXT    NOT NULL,           -- wire name
    last_requested_at   BIGINT,
    server_refreshed_at BIGINT,                     -- max-merged
    server_attempted_at BIGINT,                     -- max-merged
    next_due_at         BIGINT,                     -- written by the daemon for status pages
    failures            INTEGER NOT NULL DEFAULT 0,
    backoff_until       BIGINT,
    parked_reason       TEXT,                       -- 403: this product is skipped
    refresh_requested   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (link_id, product)
) WITHOUT ROWID;
