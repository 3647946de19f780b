//! Who is calling. Bearer access tokens are verified here, at the edge,
//! against identity's published keys ([`jwks`]) and its revocation list
//! ([`bearer`]); upstreams get the verified identity from the BFF only.

pub mod bearer;
pub mod jwks;

pub use bearer::{Identity, Rejected, Verifier};
