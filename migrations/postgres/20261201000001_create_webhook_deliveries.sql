-- Idempotency keys of verified MoneyKit webhook deliveries, so a retried or
-- replayed delivery is acknowledged without being applied twice. A key is
-- kept until expires_at; remember_delivery prunes expired rows as it goes.
CREATE TABLE webhook_deliveries (
    idempotency_key TEXT   NOT NULL PRIMARY KEY,
    expires_at      BIGINT NOT NULL
);
