-- The price each reserved unit was taken at, read from the product's row
-- under the same lock that took its stock: `POST /reservations` answers
-- with the priced lines (and refuses a total above the caller's
-- `max_amount_cents`), so checkout need not ask for each product's price
-- beforehand (issue 15: one request and one database read per line per
-- saga). A retry of the reservation answers the same prices from here.
-- NULL for reservations made before this column existed; readers fall back
-- to the product's current price.
ALTER TABLE reservation_items ADD COLUMN price_cents bigint CHECK (price_cents >= 0);
