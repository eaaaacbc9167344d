-- Refreshes, 429s and errors over the last hour and day are counted from
-- this index alone (intent_at range, outcome label).
CREATE INDEX attempts_by_time_outcome ON attempts (intent_at, outcome);
