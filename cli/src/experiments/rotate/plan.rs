//! What a rotate run is asked to do: its flags, the constants of its load
//! mix, and the Vault role TTLs it sets for the run.

use std::time::Duration;

use crate::run::accounts::{CUSTOMERS, STAFF};
use crate::run::dur::parse_duration;

/// The service under test, its Vault role and its logins' name pattern.
pub const SERVICE: &str = "identity";
/// Half-width of a rotation window around each swap.
pub const WINDOW: Duration = Duration::from_secs(1);
/// How often `pg_stat_activity` is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Sessions logged in before the load, and the most kept.
pub const SESSIONS: usize = 16;
pub const MAX_SESSIONS: usize = 64;
/// The seeded accounts the load logs in as: three customers and the staff member.
pub const USERS: [&str; 4] = [CUSTOMERS[0], CUSTOMERS[1], CUSTOMERS[2], STAFF];

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// How long the load runs.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests per second (open model: arrivals don't wait for answers).
    #[arg(long, default_value_t = 50.0, value_parser = parse_rps)]
    pub rps: f64,
    /// Lifetime of each credential during the run (the Vault role's max_ttl; default_ttl is half); at least 2s.
    #[arg(long, default_value = "5s", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Control arm: identity rotates naively (revokes before draining, no retry); the checks must catch it.
    #[arg(long)]
    pub control: bool,
}

pub fn parse_rps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (1.0..=2000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "`{s}` is not a rate between 1 and 2000 requests per second"
        )),
    }
}

pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(2) || d.subsec_nanos() != 0 {
        return Err(format!(
            "`{s}`: the TTL is whole seconds, at least 2s (Vault counts in seconds)"
        ));
    }
    Ok(d)
}

/// The Vault role's TTLs in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleTtls {
    pub default_ttl: u64,
    pub max_ttl: u64,
}

impl RoleTtls {
    /// The run's: `max_ttl` is `--ttl`, `default_ttl` half of it (rounded up).
    pub fn for_run(ttl: Duration) -> Self {
        Self {
            default_ttl: ttl.as_secs().div_ceil(2),
            max_ttl: ttl.as_secs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_must_be_whole_seconds_of_at_least_two() {
        assert_eq!(parse_ttl("5s"), Ok(Duration::from_secs(5)));
        assert!(parse_ttl("1s").is_err());
        assert!(parse_ttl("2500ms").is_err());
        assert!(parse_rps("0").is_err());
    }

    #[test]
    fn the_run_s_default_ttl_is_half_its_max_ttl_rounded_up() {
        assert_eq!(
            RoleTtls::for_run(Duration::from_secs(5)),
            RoleTtls {
                default_ttl: 3,
                max_ttl: 5
            }
        );
    }
}
