-- A link's history, newest first (explain, status, admin API).
CREATE INDEX attempts_by_link ON attempts (link_id, intent_at);
