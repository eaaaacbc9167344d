-- Pruning expired idempotency keys finds them without a full scan.
CREATE INDEX webhook_deliveries_by_expiry ON webhook_deliveries (expires_at);
