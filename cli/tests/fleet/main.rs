//! `storefront up/status/logs/down` against real Postgres, Redis, RabbitMQ,
//! OpenBao and the catalog service, on a free port range; one module per
//! concern.

#[path = "../support/mod.rs"]
mod support;

mod external;
mod lifecycle;
mod preflight;
mod secrets;
