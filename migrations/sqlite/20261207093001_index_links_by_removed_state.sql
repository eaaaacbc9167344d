-- The fleet page counts links by (removed, state) and lists one state in id
-- order; this index answers both without reading the table.
CREATE INDEX links_by_removed_state ON links (removed, state, id);
