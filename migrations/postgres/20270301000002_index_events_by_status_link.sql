-- The delivery task's claim reads the pending heads per link in seq order;
-- listings read pending and failed rows by age.
CREATE INDEX events_by_status_link ON events (status, link_id, seq);
