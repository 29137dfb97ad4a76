-- Carts: one per customer, its lines with what catalog last said about each product (so the
-- cart still reads, marked stale, while catalog is down).
CREATE TABLE carts (
    customer_id TEXT PRIMARY KEY,
    updated_at TEXT NOT NULL
);

CREATE TABLE cart_lines (
    customer_id TEXT NOT NULL REFERENCES carts (customer_id) ON DELETE CASCADE,
    product_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    -- The price when the line was added, and the last price catalog confirmed (minor units).
    added_price BIGINT NOT NULL CHECK (added_price >= 0),
    unit_price BIGINT NOT NULL CHECK (unit_price >= 0),
    currency TEXT NOT NULL,
    -- When catalog last confirmed name, price and availability.
    checked_at TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (customer_id, product_id)
);

-- Orders. Amounts are minor units of `currency`; ids are UUIDv7, so id order is time order.
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelling', 'cancelled', 'shipped')),
    cancel_reason TEXT,
    currency TEXT NOT NULL,
    total BIGINT NOT NULL CHECK (total > 0),
    payment_method_id TEXT NOT NULL,
    -- The checkout's Idempotency-Key (scoped to the customer): a checkout run again after its
    -- first run committed but lost its answer finds this order instead of placing another.
    checkout_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, id);
CREATE INDEX orders_by_status ON orders (status, id);

CREATE TABLE order_lines (
    order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    name TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    -- The price catalog gave at checkout, and the one the cart showed (a change is visible).
    unit_price BIGINT NOT NULL CHECK (unit_price >= 0),
    cart_price BIGINT NOT NULL CHECK (cart_price >= 0),
    line_total BIGINT NOT NULL CHECK (line_total >= 0),
    PRIMARY KEY (order_id, product_id)
);

-- Every status an order had, with its time.
CREATE TABLE order_history (
    order_id TEXT NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- The checkout saga of each order: the machine's state as JSON, the state's name and the next
-- time it needs a look (NULL once it waits for nothing).
CREATE TABLE sagas (
    order_id TEXT PRIMARY KEY REFERENCES orders (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    body TEXT NOT NULL,
    next_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX sagas_due ON sagas (next_at) WHERE next_at IS NOT NULL;

-- The transactional outbox (platform::events::outbox), copied as the kit asks.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    aggregate TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT
);
CREATE INDEX outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;

-- The inbox of the consumers of stock and payment answers (platform::events::inbox).
CREATE TABLE inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    processed_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- Idempotency-Key records of checkouts (platform::http::idempotency).
CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    claim TEXT NOT NULL,
    locked_until TEXT NOT NULL,
    status INTEGER,
    content_type TEXT,
    location TEXT,
    body TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (scope, idempotency_key)
);
CREATE INDEX idempotency_keys_expiry ON idempotency_keys (expires_at);
