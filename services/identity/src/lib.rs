//! The identity service: logins (password grant) issue short-lived access
//! JWTs signed with Ed25519 and single-use refresh tokens that rotate with
//! reuse detection; revoked `jti`s go on a Redis denylist; public keys are
//! at `/.well-known/jwks.json`. Its Postgres credentials come from Vault and
//! rotate while it serves ([`db`]). Password checks are bounded in number
//! and memory ([`password`]) and guessing is slowed per account and per
//! address before any hash runs ([`throttle`]).
//!
//! A library as well as a binary so `tests/` can build the real
//! [`startup::Application`] on port 0 against a throwaway schema.

#![warn(missing_docs)]
// Outside tests a panic is a bug: errors are returned, never unwrapped.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod config;
pub mod contract;
pub mod db;
pub mod denylist;
pub mod keys;
pub mod password;
pub mod refresh;
pub mod routes;
pub mod startup;
pub mod store;
pub mod throttle;
pub mod tokens;
