-- Payments: one payment session per order, its append-only history, the
-- provider webhooks received (deduplicated by the provider's event id), the
-- transactional outbox and the inbox. Plus the simulated provider's own
-- state (provider_*), which a real provider would keep on its side.
-- Runs as the `payments` role with search_path = payments.

CREATE TABLE payments (
    payment_id   uuid        PRIMARY KEY,
    order_id     uuid        NOT NULL UNIQUE,
    provider     text        NOT NULL CHECK (provider IN ('stripe', 'paypal')),
    -- The provider's id for the session (pi_… / PAYID-…); webhooks name it.
    provider_ref text        NOT NULL UNIQUE,
    amount_cents bigint      NOT NULL CHECK (amount_cents > 0),
    currency     char(3)     NOT NULL,
    card_last4   char(4)     NOT NULL,
    status       text        NOT NULL CHECK (status IN ('pending', 'authorized', 'declined',
                     'capture_requested', 'captured', 'capture_failed', 'void_requested', 'voided')),
    version      integer     NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Every change of a payment, never updated: "captured exactly once" is a
-- count of rows here.
CREATE TABLE payment_transitions (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id  uuid        NOT NULL REFERENCES payments,
    from_status text,
    to_status   text        NOT NULL,
    cause       text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX payment_transitions_payment_idx ON payment_transitions (payment_id, id);

-- Webhooks accepted (signature valid), once per provider event id.
CREATE TABLE webhook_events (
    provider    text        NOT NULL,
    event_id    text        NOT NULL,
    event_type  text        NOT NULL,
    provider_ref text       NOT NULL,
    body        jsonb       NOT NULL,
    outcome     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

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

-- The simulated provider's ledger: what it authorized, captured, voided.
-- `captures` counts money actually moved, the provider-side proof of
-- "captured exactly once".
CREATE TABLE provider_intents (
    intent_id    text        PRIMARY KEY,
    provider     text        NOT NULL,
    payment_id   uuid        NOT NULL UNIQUE,
    behaviour    text        NOT NULL,
    amount_cents bigint      NOT NULL,
    currency     char(3)     NOT NULL,
    state        text        NOT NULL CHECK (state IN ('processing', 'authorized', 'declined',
                     'captured', 'capture_failed', 'canceled')),
    captures     integer     NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Webhooks the simulated provider owes us: each event once or twice, at a
-- random moment, retried until our endpoint answers 2xx.
CREATE TABLE provider_deliveries (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    provider     text        NOT NULL,
    event_id     text        NOT NULL,
    event_type   text        NOT NULL,
    intent_id    text        NOT NULL REFERENCES provider_intents,
    body         text        NOT NULL,
    deliver_at   timestamptz NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    last_status  integer,
    delivered_at timestamptz
);
CREATE INDEX provider_deliveries_due_idx ON provider_deliveries (deliver_at)
    WHERE delivered_at IS NULL;
