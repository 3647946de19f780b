//! Load generation. `open` is the open-model driver (a constant arrival
//! rate, independent of responses), shared by `storefront flood` and
//! `storefront load --rate`.

// Its callers (`flood`, `load --rate`) are being written; until they land
// only its tests use it. Remove this allow with them.
#[allow(dead_code)]
pub mod open;
