-- Data age per product on the fleet page: counts and percentiles of
-- last_requested_at walk this index instead of the table.
CREATE INDEX schedules_by_product_requested ON schedules (product, last_requested_at);
