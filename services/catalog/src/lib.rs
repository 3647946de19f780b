//! The catalog service: the read path for products.
//!
//! A library as well as a binary so `tests/` can build the real
//! [`startup::Application`] on port 0 against a throwaway schema.

pub mod config;
pub mod routes;
pub mod startup;
pub mod store;
