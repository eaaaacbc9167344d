-- The budget (issue 17): each replica counts the other replicas' POSTs in
-- the rolling window every second (intent_at range, replica not its own);
-- this index answers that from the index alone. SQLite has one daemon per
-- file and never asks.
CREATE INDEX attempts_by_time_replica ON attempts (intent_at, replica);
