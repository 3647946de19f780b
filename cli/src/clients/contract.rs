//! The services' wire types, as the services define them: each module is
//! the service's own `src/contract.rs`, compiled here as well (`#[path]`),
//! so the CLI reads and writes exactly the bodies the handlers do.
//!
//! Not a dependency on the service crates: that would build each whole
//! server (Argon2, JWT, OpenTelemetry, the metrics exporter, moka: about
//! 110 more crates, six of them second versions of crates the CLI already
//! has) into the CLI and rebuild it on every service edit. A contract file
//! names only serde, uuid, chrono and utoipa, which the CLI has too.

// The CLI sends and reads a subset of each service's bodies.
#[allow(dead_code)]
#[path = "../../../services/catalog/src/contract.rs"]
pub mod catalog;
// Names payments' `Provider` as `super::payments::Provider`: the module below.
#[path = "../../../services/checkout/src/contract.rs"]
pub mod checkout;
#[allow(dead_code)]
#[path = "../../../services/claims/src/contract.rs"]
pub mod claims;
#[allow(dead_code)]
#[path = "../../../services/identity/src/contract.rs"]
pub mod identity;
// Its message names (`AuthorizePayment`, `PaymentAuthorized`, …) are the
// wire's; clippy spares them in the payments library's public API only.
#[allow(dead_code, clippy::enum_variant_names)]
#[path = "../../../services/payments/src/contract.rs"]
pub mod payments;
