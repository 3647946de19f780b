//! Typed clients for what the CLI asks of the fleet: one small struct per
//! service (a `reqwest::Client` and a base URL, one method per call) on the
//! wire types the services themselves use, and one Prometheus scrape.
//! Errors name the URL and the status.

pub mod bff_admin;
pub mod call;
pub mod catalog;
pub mod checkout;
pub mod claims;
pub mod contract;
pub mod identity;
pub mod metrics;
pub mod payments;
pub mod vault;
