-- The fleet page's "POSTs due per minute" chart counts distinct links per
-- minute of next_due_at; with link_id in the index it never reads the table.
CREATE INDEX schedules_by_due_link ON schedules (next_due_at, link_id);
