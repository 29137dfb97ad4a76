-- Inventory: stock per product and all-or-nothing reservations made by the checkout saga.
-- Invariants: 0 <= reserved <= on_hand, and reserved = the sum of the product's active
-- reservation lines (kept by the store, which changes both in one transaction).

CREATE TABLE stock (
    product_id TEXT PRIMARY KEY REFERENCES products(id),
    on_hand    BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved   BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= on_hand),
    updated_at TEXT NOT NULL
);

-- One row per order id ever seen: its primary key makes a reserve idempotent (a repeat finds
-- the row and replays `outcome`, the JSON of the first answer; NULL for a release tombstone).
CREATE TABLE reservations (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL
        CHECK (status IN ('active', 'committed', 'released', 'expired', 'rejected')),
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    outcome    TEXT
);
-- The sweeper's scan: active reservations by expiry.
CREATE INDEX reservations_status_expires ON reservations(status, expires_at);

CREATE TABLE reservation_lines (
    order_id   TEXT NOT NULL REFERENCES reservations(order_id),
    product_id TEXT NOT NULL REFERENCES products(id),
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX reservation_lines_product ON reservation_lines(product_id);
