-- Stock reservations for the checkout saga. A reservation is keyed by an id
-- the caller chooses, so a retried request finds the first attempt instead
-- of decrementing twice. Rows are never deleted: a released reservation
-- keeps its id, so the same id can't reserve again by accident.

CREATE TABLE reservations (
    reservation_id uuid        PRIMARY KEY,
    status         text        NOT NULL DEFAULT 'reserved'
                               CHECK (status IN ('reserved', 'released')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    released_at    timestamptz,
    -- released_at is set exactly when the stock went back.
    CONSTRAINT reservations_released_at_check
        CHECK ((status = 'released') = (released_at IS NOT NULL))
);

CREATE TABLE reservation_items (
    reservation_id uuid    NOT NULL REFERENCES reservations ON DELETE CASCADE,
    product_id     bigint  NOT NULL REFERENCES products,
    quantity       integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, product_id)
);

-- "Which reservations hold this product?" and the foreign key's checks on
-- product deletes.
CREATE INDEX reservation_items_product_id_idx ON reservation_items (product_id);
