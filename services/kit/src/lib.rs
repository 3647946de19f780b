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
//! let config = CommonConfig::from_env()?;
//! telemetry::init(&config.service_name);
//! let pool = db::connect_pg(config.require_database_url()?, 10)?;
//! let app = http::app(&config, routes, [checks::postgres(pool.clone())]);
//! shutdown::serve(listener, app, config.shutdown_grace).await?;
//! pool.close().await;
//! ```

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod checks;
pub mod config;
pub mod db;
pub mod entry;
pub mod error;
pub mod http;
#[cfg(feature = "amqp")]
pub mod inbox;
pub mod openapi;
#[cfg(feature = "amqp")]
pub mod outbox;
pub mod shutdown;
pub mod startup;
pub mod telemetry;

pub use config::{CommonConfig, ConfigError, Vars};
pub use error::Problem;
