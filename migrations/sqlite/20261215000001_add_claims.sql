-- Several replicas (see "Several replicas" in src/store/mod.rs); SQLite has a
-- single writer, so the next links.intent_seq is simply MAX + 1 (indexed).
ALTER TABLE attempts ADD COLUMN replica TEXT;
ALTER TABLE links ADD COLUMN intent_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX links_by_intent_seq ON links (intent_seq);
