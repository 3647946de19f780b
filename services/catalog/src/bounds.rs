//! The largest numbers the catalog accepts from a client, so no arithmetic
//! on stock or money can overflow downstream: checkout multiplies
//! `price_cents` by a quantity and sums lines in `i64`, and stock lives in a
//! Postgres `integer` (`i32`).
//!
//! With a price at most [`MAX_PRICE_CENTS`] (10^10) and a line's quantity at
//! most [`MAX_QUANTITY`] (10^6), a line is at most 10^16 and a hundred lines
//! 10^18 < `i64::MAX` (9.2 × 10^18).
//!
//! Stock: a client may set at most [`MAX_STOCK`] (10^9, half of `i32::MAX`)
//! or move it by at most that much; a delta that would leave the `integer`
//! range is 422 (the database reports the overflow). Releasing a
//! reservation puts stock back *saturating* at `i32::MAX`: a release must
//! always complete (the checkout saga's compensation depends on it), and the
//! only way to get there is to raise stock past 1.1 × 10^9 while units are
//! held, where losing the excess is the lesser harm. It is logged.

/// Largest stock a client may set, and largest change in one PATCH.
pub const MAX_STOCK: i32 = 1_000_000_000;
/// Largest price in minor units (100 million in major units).
pub const MAX_PRICE_CENTS: i64 = 10_000_000_000;
/// Largest quantity of one reservation line.
pub const MAX_QUANTITY: i32 = 1_000_000;
