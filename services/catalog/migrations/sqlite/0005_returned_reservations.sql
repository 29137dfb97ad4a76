-- A committed reservation can be `returned`: the order's compensation on the bus ("make sure
-- the order holds no stock") puts a sold reservation's units back on hand.
--
-- A reserve on the bus naming a product catalog does not know is answered as a shortage (0
-- available) and its lines are kept like any rejected reservation's, so a repeat is compared
-- against them: the lines can no longer reference `products` (which are never deleted anyway,
-- only deactivated).
--
-- SQLite cannot alter a CHECK or drop a foreign key, so both tables are rebuilt. This runs in
-- the migration's transaction with foreign keys on (PRAGMA foreign_keys cannot change inside
-- a transaction), so the order matters: `reservation_lines` (the only table referencing
-- `reservations`) is set aside and dropped first, so that dropping `reservations` deletes no
-- referenced row; then both are created again with their indexes and their rows copied back.

CREATE TABLE reservation_lines_old AS SELECT order_id, product_id, quantity FROM reservation_lines;
DROP TABLE reservation_lines;

CREATE TABLE reservations_new (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL
        CHECK (status IN ('active', 'committed', 'released', 'expired', 'rejected', 'returned')),
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    outcome    TEXT
);
INSERT INTO reservations_new (order_id, status, expires_at, created_at, updated_at, outcome)
    SELECT order_id, status, expires_at, created_at, updated_at, outcome FROM reservations;
DROP TABLE reservations;
ALTER TABLE reservations_new RENAME TO reservations;
CREATE INDEX reservations_status_expires ON reservations(status, expires_at);

CREATE TABLE reservation_lines (
    order_id   TEXT NOT NULL REFERENCES reservations(order_id),
    product_id TEXT NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_id)
);
INSERT INTO reservation_lines (order_id, product_id, quantity)
    SELECT order_id, product_id, quantity FROM reservation_lines_old;
DROP TABLE reservation_lines_old;
CREATE INDEX reservation_lines_product ON reservation_lines(product_id);
