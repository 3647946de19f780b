//! Load generation. `open` is the open-model driver (a constant arrival
//! rate, independent of responses), shared by `storefront flood` and
//! `storefront load --rate`.

pub mod open;
