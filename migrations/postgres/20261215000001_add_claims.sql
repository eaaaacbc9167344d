-- Several replicas on one database (see "Several replicas" in src/store/mod.rs).
-- attempts.replica: who claimed the attempt, so its outcome releases only that
-- replica's lease. links.intent_seq: stamped from a sequence by every claim and
-- released lease, so replicas poll "claims since N" to learn of each other's
-- sends; a sequence, not a counter row, so claims never wait on one hot lock.
ALTER TABLE attempts ADD COLUMN replica TEXT;
ALTER TABLE links ADD COLUMN intent_seq BIGINT NOT NULL DEFAULT 0;
CREATE SEQUENCE link_intent_seq;
CREATE INDEX links_by_intent_seq ON links (intent_seq);
