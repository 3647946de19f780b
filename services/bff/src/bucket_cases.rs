//! The bucket's test vectors: the scenarios the Rust bucket (`bucket.rs`'s
//! unit tests) and the Lua script (`tests/limiter.rs`, against a real Redis)
//! must agree on — a sequence of request times (µs) and whether each is
//! allowed. Compiled into those tests only, never into the service: each
//! includes this file as `mod cases` beside an import of `Policy`.

use super::Policy;

/// One scenario: a policy and `(now_us, allowed, retry_after_us)` steps.
pub struct Case {
    /// What it shows.
    pub name: &'static str,
    /// The bucket's policy.
    pub policy: Policy,
    /// Request time, expected verdict, expected retry-after.
    pub steps: Vec<(i64, bool, i64)>,
}

/// A realistic epoch in µs (2024), so the Lua copy is exercised with
/// 16-digit numbers, where a careless `tostring` would lose digits.
pub const T0: i64 = 1_717_171_717_000_000;

/// The scenarios both implementations must agree on.
pub fn all() -> Vec<Case> {
    let p = |c, r| Policy::new(c, r).expect("valid");
    vec![
        Case {
            name: "a burst of capacity passes, the next waits one token",
            policy: p(3, 10),
            steps: vec![
                (T0, true, 0),
                (T0, true, 0),
                (T0, true, 0),
                (T0, false, 100_000),
                (T0 + 40_000, false, 60_000),
                (T0 + 100_000, true, 0),
                (T0 + 100_001, false, 99_999),
            ],
        },
        Case {
            name: "refill is capped at capacity after a long idle",
            policy: p(2, 1),
            steps: vec![
                (T0, true, 0),
                (T0, true, 0),
                (T0 + 3_600_000_000, true, 0),
                (T0 + 3_600_000_000, true, 0),
                (T0 + 3_600_000_000, false, 1_000_000),
            ],
        },
        Case {
            name: "a clock running backwards refills nothing",
            policy: p(1, 1),
            steps: vec![
                (T0 + 500_000, true, 0),
                (T0, false, 1_000_000),
                (T0 + 1_400_000, false, 100_000),
                (T0 + 1_500_000, true, 0),
            ],
        },
        Case {
            name: "partial refills accumulate exactly (no remainder lost)",
            // 3 micro-tokens per µs: every 111,111 µs adds 333,333.
            policy: p(1, 3),
            steps: vec![
                (T0 + 1, true, 0),
                (T0 + 111_112, false, 222_223),
                (T0 + 222_223, false, 111_112),
                (T0 + 333_334, false, 1),
                (T0 + 333_335, true, 0),
            ],
        },
    ]
}
