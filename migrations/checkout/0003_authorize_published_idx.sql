-- The authorization timeout runs from when the authorize command was
-- published (issue 12, defect c), so the orchestrator looks up an order's
-- authorize row in the outbox whenever its deadline comes up, and every
-- 500 ms while the command still waits (a paused broker). Without this the
-- lookup scanned the whole outbox, which keeps an hour of published rows.
CREATE INDEX outbox_authorize_order_idx ON outbox ((payload->>'order_id'))
    WHERE kind = 'authorize_payment';
