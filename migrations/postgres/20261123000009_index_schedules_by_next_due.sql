-- Status and plan pages ask for the products due soonest (and overdue ones).
CREATE INDEX schedules_by_next_due ON schedules (next_due_at);
