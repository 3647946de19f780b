-- Whose claim it is: the customer the BFF verified (`X-User-Id`), NULL for
-- the lab's own claims sent straight to the service. `customer_id` (text)
-- stays what the claim says; `owner_id` is who may read it.
ALTER TABLE claims ADD COLUMN owner_id uuid;

-- Idempotency keys are scoped per owner: the same key from two customers
-- is two claims, so a replay by someone else can neither reveal nor reuse
-- the first customer's claim. NULLS NOT DISTINCT keeps the lab's claims
-- (no owner) one key space, as before.
ALTER TABLE claims DROP CONSTRAINT claims_idempotency_key_key;
ALTER TABLE claims ADD CONSTRAINT claims_owner_key
    UNIQUE NULLS NOT DISTINCT (owner_id, idempotency_key);
