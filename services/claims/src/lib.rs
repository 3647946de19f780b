//! The claims service: customers report damaged, missing or wrong items, and
//! `POST /claims` is the storefront's public idempotency contract — retry it
//! with the same `Idempotency-Key` and body as often as you like, one claim
//! is recorded and every retry gets the first response back, byte for byte.
//!
//! A library as well as a binary so `tests/` can build the real
//! [`startup::Application`] on port 0 against a throwaway schema.

#![warn(missing_docs)]
// Outside tests a panic is a bug: errors are returned, never unwrapped.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod claim;
pub mod config;
pub mod contract;
pub mod fingerprint;
pub mod idempotency;
pub mod retention;
pub mod routes;
pub mod startup;
pub mod store;
