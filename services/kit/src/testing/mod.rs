//! What every service's integration tests share (feature `testing`, enabled
//! only by the services' `[dev-dependencies]`): one [`spawn_app`] that boots
//! a service's `Application` on an ephemeral loopback port against the real
//! servers named by `TEST_DATABASE_URL`, `TEST_REDIS_URL` and
//! `TEST_AMQP_URL`, in a fresh schema with the service's migrations
//! applied, and [`TestApp::cleanup`] that stops it and drops the schema.
//!
//! Without the URLs a test prints why and passes, so `cargo test` works on a
//! machine without the servers; in CI (`CI` set) a missing URL is a failure
//! (scripts/test.sh boots the servers and sets all three).
//!
//! A service describes itself once, in its `tests/common`, by implementing
//! [`Service`] on a marker type: which servers it needs, its migrations, its
//! settings for a test, and how its `Application` is built, tells its port
//! and runs until told to stop.

// Test support: a broken test environment is reported by panicking with the
// reason, which is how a test fails.
#![allow(clippy::missing_panics_doc)]

use std::time::Duration;

/// What [`Service::migrator`] returns (re-exported for services without sqlx).
pub use sqlx::migrate::Migrator;
/// What [`Service::run`] is told to stop by.
pub use tokio_util::sync::CancellationToken;

mod app;
mod env;
mod helpers;
mod service;

pub use app::{Reply, TestApp, settings, spawn_app};
pub use env::{Infra, Schema, Server, TestEnv, unique_name, with_search_path};
#[cfg(feature = "amqp")]
pub use helpers::delete_queues;
pub use helpers::{counter, eventually, until};
pub use service::{Service, pairs};

/// How long a stopped app may take to drain before the test fails.
const STOP_WITHIN: Duration = Duration::from_secs(10);
