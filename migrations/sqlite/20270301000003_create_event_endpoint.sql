-- The configured events endpoint as the store knows it (one row, or none
-- when [events] is not configured: then no outbox rows are written). A 410
-- Gone from the receiver sets disabled_at/disabled_reason here, so every
-- replica and every restart stops sending until the url changes or an
-- operator runs `linkfresh events --enable`.
CREATE TABLE event_endpoint (
    id              INTEGER NOT NULL PRIMARY KEY,
    url             TEXT    NOT NULL,
    disabled_at     BIGINT,
    disabled_reason TEXT
);
