//! The BFF (backend for frontend): the one door browsers knock on. It signs
//! browsers in and keeps their tokens server-side ([`session`]: an HttpOnly
//! cookie, refresh before expiry, CSRF), verifies API clients' bearer
//! tokens ([`auth`]), decides who may send what where ([`policy`]), routes
//! `/api/<service>/…` to a healthy replica, limits each user (else each
//! address) with a token bucket kept in Redis, stops calling a failing replica (circuit breaker),
//! retries idempotent requests within a budget, and can inject faults on
//! purpose (chaos) so the lab can watch all of that work.
//!
//! The patterns are the modules: [`bucket`] (pure) and [`limiter`] (Redis,
//! Lua), [`breaker`], [`retry`], [`chaos`]; [`path`] is the one parse of
//! what a client asked for; [`upstream`] ties them to real replicas and
//! [`routes`] to HTTP.

// Outside tests a panic is a bug: errors are returned, never unwrapped.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod auth;
pub mod breaker;
pub mod bucket;
pub mod chaos;
pub mod config;
pub mod limiter;
pub mod path;
pub mod policy;
pub mod retry;
pub mod routes;
pub mod session;
pub mod startup;
pub mod upstream;
