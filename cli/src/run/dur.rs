//! The one duration syntax of the command line and the profiles: `250ms`,
//! `20s`, `1m30s`, `1.5s`, `1h` (a sum of number-unit pairs). Every
//! `--duration`-like flag parses with [`parse_duration`] (clap:
//! `value_parser = parse_duration`), and profiles' fields are [`Dur`].
//! Written by hand rather than with humantime: humantime refuses `1.5s`,
//! which the shipped profiles use.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration written as `500ms`, `20s`, `1m30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct Dur(pub Duration);

impl TryFrom<String> for Dur {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_duration(&s).map(Dur)
    }
}

impl From<Dur> for String {
    fn from(d: Dur) -> String {
        format!("{}ms", d.0.as_millis())
    }
}

impl std::str::FromStr for Dur {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(Dur)
    }
}

/// `1h`, `2m30s`, `20s`, `250ms`, `1.5s`: a sum of number-unit pairs.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration (write 250ms, 20s, 1m30s)");
    let mut total = 0.0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..n_end].parse().map_err(|_| bad())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u_end] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[u_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_sums_of_number_unit_pairs() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
    }

    #[test]
    fn a_bare_number_or_an_unknown_unit_is_refused_with_the_syntax() {
        for s in ["", "5", "10 parsecs", "s", "1x"] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains("write 250ms, 20s, 1m30s"), "{s}: {e}");
        }
    }

    #[test]
    fn a_dur_round_trips_through_its_string_form() {
        let d: Dur = "1m30s".parse().unwrap();
        assert_eq!(String::from(d), "90000ms");
        assert_eq!(Dur::try_from(String::from(d)).unwrap(), d);
    }
}
