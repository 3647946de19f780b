//! The catalog service: products and stock. Reads go through a two-level
//! cache ([`cache`]) kept coherent across replicas by pub/sub
//! ([`invalidation`]); writes use optimistic concurrency on the row's
//! `xmin`; reservations take stock all-or-nothing, idempotently.
//!
//! A library as well as a binary so `tests/` can build the real
//! [`startup::Application`] on port 0 against a throwaway schema.

#![warn(missing_docs)]
// Outside tests a panic is a bug: errors are returned, never unwrapped.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bounds;
pub mod cache;
pub mod config;
pub mod contract;
pub mod invalidation;
pub mod routes;
pub mod startup;
pub mod store;
