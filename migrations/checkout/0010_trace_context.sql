-- The W3C trace context (`traceparent`) of the request that enqueued each
-- outbox row, so the relay publishes the message in that request's trace
-- (kit outbox.rs/amqp.rs). NULL for rows enqueued outside any trace.
-- Numbered 0010 to leave 0003..0009 to the service's own changes.
ALTER TABLE outbox ADD COLUMN traceparent text;
