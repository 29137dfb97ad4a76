-- Payment methods: what is kept of a card is the provider's token, the brand, the last four
-- digits and the expiry. Never the number or the security code.
CREATE TABLE payment_methods (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    provider_token TEXT NOT NULL,
    brand TEXT NOT NULL,
    last4 TEXT NOT NULL CHECK (length(last4) = 4),
    exp_month INTEGER NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX payment_methods_by_customer ON payment_methods (customer_id, created_at);

-- One payment per order. Amounts are minor units of `currency`.
CREATE TABLE payments (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    payment_method_id TEXT NOT NULL,
    card_brand TEXT,
    card_last4 TEXT,
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    captured_amount INTEGER NOT NULL DEFAULT 0 CHECK (captured_amount >= 0 AND captured_amount <= amount),
    refunded_amount INTEGER NOT NULL DEFAULT 0 CHECK (refunded_amount >= 0),
    refund_reserved_amount INTEGER NOT NULL DEFAULT 0 CHECK (refund_reserved_amount >= 0),
    state TEXT NOT NULL CHECK (state IN ('pending', 'authorized', 'captured', 'refunded', 'voided', 'failed')),
    failure_reason TEXT,
    provider_reference TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    CHECK (refunded_amount + refund_reserved_amount <= captured_amount)
);
CREATE INDEX payments_by_customer ON payments (customer_id, created_at);

CREATE TABLE refunds (
    id TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    state TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    failure_reason TEXT,
    -- The caller's Idempotency-Key (scoped), for refunds asked for over HTTP: a request run
    -- again after a crash finds its refund instead of making a second one.
    request_key TEXT UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX refunds_by_payment ON refunds (payment_id, created_at);

-- Provider calls to make until they have an answer. `operation_key` is the idempotency key
-- every try sends (`<payment id>:<step>`, `<payment id>:refund:<refund id>`), unique, which
-- also makes recording a step idempotent.
CREATE TABLE operations (
    id TEXT PRIMARY KEY,
    operation_key TEXT NOT NULL UNIQUE,
    payment_id TEXT NOT NULL REFERENCES payments (id),
    kind TEXT NOT NULL CHECK (kind IN ('authorize', 'capture', 'void', 'refund', 'release')),
    refund_id TEXT REFERENCES refunds (id),
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount >= 0),
    state TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
    failure_reason TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    leased_until TEXT,
    deadline_at TEXT,
    last_error TEXT,
    -- The W3C traceparent of what asked for it: the answer continues that trace.
    traceparent TEXT,
    created_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE INDEX operations_by_payment ON operations (payment_id);
CREATE INDEX operations_due ON operations (next_attempt_at) WHERE state = 'pending';
