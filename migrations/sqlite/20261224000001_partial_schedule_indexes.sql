-- Only rows with the time set are indexed: a first sync writes a row per
-- product of every link with neither time set, and indexing those cost 4 of
-- the 10 s of a million-link first sync. Every query these indexes serve
-- compares the time (or says IS NOT NULL), so the planner still uses them.
DROP INDEX schedules_by_next_due;
CREATE INDEX schedules_by_next_due ON schedules (next_due_at)
    WHERE next_due_at IS NOT NULL;
DROP INDEX schedules_by_product_requested;
CREATE INDEX schedules_by_product_requested ON schedules (product, last_requested_at)
    WHERE last_requested_at IS NOT NULL;
