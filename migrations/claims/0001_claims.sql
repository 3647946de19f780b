-- Claims (damaged, missing or wrong items) and the idempotency records that
-- make `POST /claims` safe to retry. Runs as the `claims` role with
-- search_path = claims, so names are unqualified; sqlx wraps the file in a
-- transaction, hence no BEGIN/COMMIT here.

-- One row per accepted claim, which is also its idempotency record: the
-- key, the SHA-256 of the request's canonical JSON, and the response exactly
-- as first sent (text, so a replay is byte-identical).
CREATE TABLE claims (
    claim_id        uuid        PRIMARY KEY,
    -- The UNIQUE constraint is the whole idempotency guarantee: concurrent
    -- requests with one key meet here, and `INSERT … ON CONFLICT
    -- (idempotency_key)` lets exactly one of them insert.
    idempotency_key text        NOT NULL UNIQUE,
    request_hash    text        NOT NULL,
    response_status smallint    NOT NULL,
    response_body   text        NOT NULL,
    order_id        text        NOT NULL,
    customer_id     text        NOT NULL,
    reason          text        NOT NULL
                    CHECK (reason IN ('damaged', 'missing', 'wrong_item', 'other')),
    amount_cents    bigint      NOT NULL CHECK (amount_cents >= 0),
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Retention deletes by age: DELETE … WHERE created_at < $1.
CREATE INDEX claims_created_at_idx ON claims (created_at);

-- Lab only: what the naive check-then-insert path (`POST
-- /lab/claims/check-then-insert`) writes to. Same columns, but deliberately
-- WITHOUT a unique constraint on idempotency_key, so two requests that both
-- find "no row yet" both insert and the duplicate rows stay behind for the
-- experiment to count. With the constraint, the loser would get a unique
-- violation (a 500) instead and the race would leave no trace in the data.
CREATE TABLE lab_claims (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    claim_id        uuid        NOT NULL,
    idempotency_key text        NOT NULL,
    request_hash    text        NOT NULL,
    response_status smallint    NOT NULL,
    response_body   text        NOT NULL,
    order_id        text        NOT NULL,
    customer_id     text        NOT NULL,
    reason          text        NOT NULL,
    amount_cents    bigint      NOT NULL,
    note            text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The naive path looks keys up first; not unique, only fast.
CREATE INDEX lab_claims_idempotency_key_idx ON lab_claims (idempotency_key);
