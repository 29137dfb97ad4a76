-- A checkout attempt of the storefront: its key is the order's Idempotency-Key, and the card
-- registered for it is reused by a repeated submission, so the repeat sends the same request
-- and the order service answers it with the first order instead of refusing a changed body.
CREATE TABLE checkout_attempts (
    attempt TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    payment_method_id TEXT,
    -- Unix seconds; attempts older than a day are pruned with the expired sessions.
    created_at BIGINT NOT NULL
);
CREATE INDEX checkout_attempts_created_at ON checkout_attempts (created_at);
