//! The payments service: one payment session per order (authorize,
//! capture, void) driven by commands from checkout over RabbitMQ and by a
//! payment provider's signed webhooks; every change and the event it causes
//! commit together (transactional outbox, [`storefront_kit::outbox`]), and
//! every command is applied once (inbox, [`storefront_kit::inbox`]).
//!
//! The provider is simulated in-process ([`provider`]), behaving like a
//! sandbox: test cards pick the behaviour, answers come by webhook.

#![warn(missing_docs)]
// Outside tests a panic is a bug: errors are returned, never unwrapped.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod commands;
pub mod config;
pub mod contract;
pub mod outbox_lab;
pub mod payment;
pub mod provider;
pub mod routes;
pub mod signature;
pub mod startup;
pub mod store;
pub mod webhook;
