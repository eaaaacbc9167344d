-- When an event's retry_for started: its creation, or the operator's
-- `linkfresh events --replay`, which gives a failed event a whole new
-- retry_for (NULL: since created_at).
ALTER TABLE events ADD COLUMN retry_since BIGINT;
