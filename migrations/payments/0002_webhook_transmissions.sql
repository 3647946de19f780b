-- PayPal-style transmissions accepted, once each (issue 11, item 1). A
-- signature binds a transmission id, a time and the SHA-256 of the body; the
-- row is written in the same transaction as the webhook's effect, so a
-- delivery that failed (rolled back) may be retried under the same id, and
-- one that succeeded is never applied again. The body's digest tells an
-- honest resend of the same delivery (answered 200, changes nothing) from a
-- second body under a used id (409, changes nothing).
-- Rows older than WEBHOOK_TOLERANCE_SECS may be deleted: a transmission that
-- old is refused as stale before this table is read.
CREATE TABLE webhook_transmissions (
    provider        text        NOT NULL,
    transmission_id text        NOT NULL,
    body_sha256     text        NOT NULL,
    event_id        text        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, transmission_id)
);
CREATE INDEX webhook_transmissions_received_at_idx ON webhook_transmissions (received_at);
