//! The checkout orchestrator: one saga per order — StockReservation (HTTP
//! to catalog) → PaymentSession → Capture (commands to payments over
//! RabbitMQ) → Complete — with a named compensation for every failure and
//! a deadline for every answer awaited. Each transition is persisted with
//! its outbound command (transactional outbox) before anything is sent;
//! events are applied once (inbox); the saga row carries a version for
//! optimistic concurrency; a sweeper resumes whatever a crash interrupted.

#![warn(missing_docs)]
// Outside tests a panic is a bug: errors are returned, never unwrapped.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

// The contract names payments' types as `super::payments::…`, a path the
// CLI (which compiles the same file) satisfies with its own module.
use storefront_payments::contract as payments;

pub mod catalog;
pub mod config;
pub mod contract;
pub mod events;
pub mod orchestrator;
pub mod routes;
pub mod saga;
pub mod startup;
pub mod store;
