-- Who ordered: the customer the BFF verified (`X-User-Id`). NULL for the
-- lab's own orders, sent straight to checkout without an identity.
ALTER TABLE sagas ADD COLUMN customer_id uuid;

-- Idempotency keys are scoped per customer, as a payment API scopes them
-- per account: the same key from two customers is two orders, so a replay
-- by someone else can neither reveal nor reuse the first customer's order.
-- NULLS NOT DISTINCT keeps the lab's keyless-customer orders one namespace.
ALTER TABLE sagas DROP CONSTRAINT sagas_idempotency_key_key;
ALTER TABLE sagas ADD CONSTRAINT sagas_customer_key
    UNIQUE NULLS NOT DISTINCT (customer_id, idempotency_key);
CREATE INDEX sagas_customer_idx ON sagas (customer_id) WHERE customer_id IS NOT NULL;
