-- A committed reservation can be `returned`: the order's compensation on the bus ("make sure
-- the order holds no stock") puts a sold reservation's units back on hand.
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('active', 'committed', 'released', 'expired', 'rejected', 'returned'));

-- A reserve on the bus naming a product catalog does not know is answered as a shortage (0
-- available) and its lines are kept like any rejected reservation's, so a repeat is compared
-- against them: the lines can no longer reference `products` (which are never deleted anyway,
-- only deactivated).
ALTER TABLE reservation_lines DROP CONSTRAINT reservation_lines_product_id_fkey;
