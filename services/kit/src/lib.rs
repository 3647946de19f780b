//! What every storefront service needs once, so no service hand-rolls it:
//! typed configuration from the environment, JSON telemetry, the
//! `/health` `/ready` `/metrics` endpoints with request ids and HTTP metrics,
//! the edge every request crosses (NUL bytes refused, body read deadline,
//! `/lab/` behind `LAB_ADMIN_TOKEN`, problem+json for every framework error),
//! a server with a header-read timeout and graceful shutdown, RFC 9457
//! problem responses and pool construction.
//!
//! A service's `startup.rs` typically reads:
//!
//! ```ignore
//! let (listener, port) = startup::bind(config.common.bind_addr).await?;
//! let pool = db::connect_pg(&config.database_url, 10)?;
//! let router = http::app(&config.common, routes, [checks::postgres(pool.clone())]);
//! let server = startup::Server::new(listener, port, router, config.common.shutdown_grace);
//! // later, in `run_until(signal)`:
//! server.serve(signal, startup::Tasks::new()).await?;
//! pool.close().await;
//! ```

#![warn(missing_docs)]
// Outside tests a panic is a bug: errors are returned, never unwrapped.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod batch;
pub mod checks;
pub mod config;
pub mod db;
pub mod decimal;
pub mod entry;
pub mod error;
pub mod headers;
pub mod http;
pub mod http1;
#[cfg(feature = "amqp")]
pub mod inbox;
#[cfg(feature = "amqp")]
pub mod messaging;
pub mod openapi;
#[cfg(feature = "amqp")]
pub mod outbox;
pub mod path;
pub mod shutdown;
pub mod startup;
pub mod sync;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{CommonConfig, ConfigError, Vars};
pub use error::Problem;
