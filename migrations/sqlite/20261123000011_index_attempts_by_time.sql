-- Retention: prune_attempts deletes by intent_at without a full scan.
CREATE INDEX attempts_by_time ON attempts (intent_at);
