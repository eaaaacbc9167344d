-- The owning app's last "this user is active" call (POST
-- /api/links/{id}/activity), unix ms: demand-ruled products follow their
-- profile's active cadence for active_for after it.
ALTER TABLE links ADD COLUMN last_activity_at BIGINT;
