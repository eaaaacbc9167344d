-- attempts_by_time_outcome (intent_at, outcome) serves every intent_at range
-- this one did (pruning included); one index less to write per POST.
DROP INDEX attempts_by_time;
