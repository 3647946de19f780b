-- Checkout: one saga row per order (state + version for optimistic
-- concurrency), its append-only step history, the transactional outbox of
-- commands to payments and the inbox of payments' events.
-- Runs as the `checkout` role with search_path = checkout.

CREATE TABLE sagas (
    order_id        uuid        PRIMARY KEY,
    -- The client's Idempotency-Key: the same key is the same saga.
    idempotency_key text        NOT NULL UNIQUE,
    -- The request as first accepted, to tell a retry from a reused key.
    request         jsonb       NOT NULL,
    items           jsonb       NOT NULL,
    card_number     text        NOT NULL,
    provider        text        NOT NULL CHECK (provider IN ('stripe', 'paypal')),
    currency        char(3)     NOT NULL DEFAULT 'EUR',
    -- Set when the items are priced, just before reserving.
    amount_cents    bigint      CHECK (amount_cents > 0),
    state           text        NOT NULL CHECK (state IN ('reserving', 'awaiting_authorization',
                        'awaiting_capture', 'voiding_payment', 'releasing_stock',
                        'completed', 'failed', 'rejected')),
    failure         text        CHECK (failure IN ('out_of_stock', 'reservation_failed',
                        'payment_declined', 'capture_failed', 'authorization_timeout')),
    version         integer     NOT NULL DEFAULT 1,
    -- HTTP step retries since the last transition.
    attempts        integer     NOT NULL DEFAULT 0,
    -- When the sweeper looks again: a deadline, a retry, or a lease; NULL
    -- once terminal.
    next_attempt_at timestamptz,
    -- The reservation step gives up (and compensates) after this.
    reserve_deadline timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz,
    CONSTRAINT sagas_terminal_check CHECK (
        (state IN ('completed', 'failed', 'rejected')) = (finished_at IS NOT NULL)
        AND (finished_at IS NULL) = (next_attempt_at IS NOT NULL))
);
CREATE INDEX sagas_due_idx ON sagas (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

-- One row per transition, written with it; (order_id, version) is the
-- version the transition produced, so a lost OCC race can't add a row.
CREATE TABLE saga_steps (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   uuid        NOT NULL REFERENCES sagas,
    version    integer     NOT NULL,
    from_state text,
    to_state   text        NOT NULL,
    cause      text        NOT NULL,
    command    text,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (order_id, version)
);

-- The history is append-only, for the owner too.
CREATE FUNCTION saga_steps_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'saga_steps is append-only';
END $$;
CREATE TRIGGER saga_steps_append_only BEFORE UPDATE OR DELETE ON saga_steps
    FOR EACH ROW EXECUTE FUNCTION saga_steps_append_only();

CREATE TABLE outbox (
    id              uuid        PRIMARY KEY,
    destination     text        NOT NULL,
    kind            text        NOT NULL,
    payload         jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_error      text,
    published_at    timestamptz,
    dead_at         timestamptz
);
CREATE INDEX outbox_pending_idx ON outbox (next_attempt_at)
    WHERE published_at IS NULL AND dead_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at)
    WHERE published_at IS NOT NULL;

CREATE TABLE inbox (
    message_id   uuid        PRIMARY KEY,
    kind         text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX inbox_processed_at_idx ON inbox (processed_at);
