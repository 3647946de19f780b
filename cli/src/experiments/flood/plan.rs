//! What a flood run is asked to do: its flags, who sends each arrival
//! where, and the bucket the checks assume.

use anyhow::Result;

use crate::exit::{self, Exit};
use crate::run::dur::parse_duration;

/// `--duration`: the CLI's one duration syntax (`5s`, `1m`), whole seconds
/// from 1 s to 60 s.
pub fn parse_whole_secs(s: &str) -> Result<u64, String> {
    let d = parse_duration(s)?;
    if d.subsec_nanos() != 0 || !(1..=60).contains(&d.as_secs()) {
        return Err(format!("`{s}`: flood runs whole seconds from 1s to 60s"));
    }
    Ok(d.as_secs())
}

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Arrivals per second, all sessions together (loopback only).
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub rps: u32,
    /// How long the load runs: whole seconds, 1s..=60s (`5s`, `1m`).
    #[arg(long, default_value = "5s", value_parser = parse_whole_secs)]
    pub duration: u64,
    /// Users the arrivals are spread over (round-robin), each its own bucket:
    /// seeded customers, logged in (at most as many as there are).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub sessions: u32,
    /// How far below the ideal count a session's acceptances may fall (percent).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub tolerance_pct: u32,
    /// Afterwards, time N cached GETs through the BFF and N straight to the replicas, interleaved (0: skip).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub compare_direct: u32,
    /// Control arm: judge against this capacity instead of the BFF's (a wrong one must fail).
    #[arg(long, hide = true)]
    pub expect_capacity: Option<u32>,
}

/// Requests in flight at most; beyond it an arrival is dropped and counted.
pub const MAX_IN_FLIGHT: usize = 4096;
pub const ACCEPTED: &str = "accepted (200)";
pub const REJECTED: &str = "rejected (429)";
pub const OTHER: &str = "other";
/// The seeded customers (identity's migrations), one per session; the
/// staff member is left alone.
pub use crate::run::accounts::CUSTOMERS;

/// Which user and which BFF instance arrival `i` goes to: users in turn, and
/// each user's successive requests to every instance in turn.
pub fn route(i: u64, users: u64, instances: u64) -> (usize, usize) {
    let user = i % users;
    let instance = (i / users) % instances;
    (user as usize, instance as usize)
}

/// The first `n` customers, or a usage error naming them.
pub fn customers(n: u32) -> Result<&'static [&'static str]> {
    CUSTOMERS.get(..n as usize).ok_or_else(|| {
        Exit::error(
            exit::USAGE,
            format!(
                "--sessions {n}: flood logs in one seeded customer per session and there are {} ({})",
                CUSTOMERS.len(),
                CUSTOMERS.join(", ")
            ),
        )
    })
}

/// The bucket the checks assume.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub capacity: u64,
    pub refill_per_sec: u64,
}

impl Limits {
    /// `Retry-After` is whole seconds until a token exists: at least 1, at
    /// most the time one token takes, rounded up.
    pub fn retry_after_ok(&self, value: Option<&str>) -> bool {
        let longest = self.longest_retry_after();
        value
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|v| (1..=longest).contains(&v))
    }

    /// The longest valid `Retry-After`: one token's time, whole seconds.
    pub fn longest_retry_after(&self) -> u64 {
        1u64.div_ceil(self.refill_per_sec.max(1)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        capacity: 200,
        refill_per_sec: 100,
    };

    #[test]
    fn duration_takes_the_common_syntax_in_whole_seconds() {
        assert_eq!(parse_whole_secs("5s"), Ok(5));
        assert_eq!(parse_whole_secs("1m"), Ok(60));
        // The shared parser refuses a bare number: `7` is not a duration.
        for bad in ["7", "0s", "61s", "1500ms", "2h", "soon", ""] {
            let e = parse_whole_secs(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad} refused with a reason");
        }
    }

    #[test]
    fn retry_after_must_be_a_whole_second_count_within_one_token() {
        assert!(L.retry_after_ok(Some("1")));
        assert!(!L.retry_after_ok(Some("0")));
        assert!(!L.retry_after_ok(Some("5")));
        assert!(!L.retry_after_ok(Some("soon")));
        assert!(!L.retry_after_ok(None));
    }

    #[test]
    fn each_users_successive_requests_visit_every_instance_in_turn() {
        let routes: Vec<(usize, usize)> = (0..6).map(|i| route(i, 3, 2)).collect();
        assert_eq!(routes, vec![(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]);
        // Two users on two instances: no user sticks to one instance.
        let alice: Vec<usize> = (0..8)
            .map(|i| route(i, 2, 2))
            .filter(|r| r.0 == 0)
            .map(|r| r.1)
            .collect();
        assert_eq!(alice, vec![0, 1, 0, 1]);
        assert!((0..10).all(|i| route(i, 4, 1).1 == 0));
    }

    #[test]
    fn more_sessions_than_seeded_customers_is_a_usage_error_naming_them() {
        assert_eq!(customers(2).unwrap(), ["alice", "bob"]);
        assert_eq!(customers(7).unwrap().len(), 7);
        let e = customers(8).err().unwrap();
        assert!(e.to_string().contains("there are 7 (alice, bob"), "{e}");
        assert_eq!(e.downcast_ref::<Exit>().map(|x| x.code), Some(exit::USAGE));
    }
}
