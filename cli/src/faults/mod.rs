//! Fault schedules for `storefront load`: `[[faults]]` in a load profile (or
//! `--faults FILE`, which replaces them) say what to break, when and for
//! how long; the run injects them while the load runs and reports each
//! fault's start, end and outcome on a per-second timeline beside the
//! histograms and invariants.
//!
//! - `schedule`: the entries as written, validated with errors naming the field;
//! - `plan`: the seeded planner (times with jitter, a replica for a service);
//! - `exec`: the executor, through the control plane as a library;
//! - `outcome`: what each fault did, its timeline mark and the invariant.

pub mod exec;
pub mod outcome;
pub mod plan;
pub mod schedule;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::run::spec::{ProfileError, field_at, line_of};
use schedule::{FaultFile, FaultSpec};

/// Reads a `--faults FILE` (nothing but `[[faults]]`) and validates it
/// against the load's `duration`; errors name the file, line and field.
pub fn load_file(path: &Path, duration: Duration) -> Result<Vec<FaultSpec>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read fault schedule {}", path.display()))?;
    Ok(parse(&text, &path.display().to_string(), duration)?)
}

/// Parses and validates a fault file's text; `file` is for the message.
pub fn parse(text: &str, file: &str, duration: Duration) -> Result<Vec<FaultSpec>, ProfileError> {
    let f: FaultFile = toml::from_str(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start);
        ProfileError {
            file: file.into(),
            line: line_of(text, at),
            field: field_at(text, at),
            message: e.message().trim().to_owned(),
        }
    })?;
    schedule::validate(&f.faults, duration).map_err(|p| ProfileError {
        file: file.into(),
        line: line_of(text, p.at),
        field: p.field,
        message: p.message,
    })?;
    Ok(f.faults)
}

#[cfg(test)]
mod tests {
    use super::plan::{plan, resolve};
    use super::schedule::Kind;
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    const MIN: Duration = Duration::from_secs(60);

    const OK: &str = r#"
[[faults]]
kind = "kill"
target = "payments"
at = "10s"
every = "15s"
jitter = "2s"
for = "2s"

[[faults]]
kind = "restart"
target = "postgres"
at = "30s"
mode = "fast"

[[faults]]
kind = "pause"
target = "rabbitmq"
at = "20s"
for = "3s"

[[faults]]
kind = "kill"
target = "catalog"
at = "40s"

[[faults]]
kind = "revoke_lease"
target = "identity"
at = "5s"

[[faults]]
kind = "chaos"
target = "catalog"
at = "50s"
for = "5s"
chaos = { error_rate = 0.2, latency_ms = 30 }
"#;

    fn err(text: &str) -> String {
        parse(text, "f.toml", MIN).unwrap_err().to_string()
    }

    fn fleet() -> Vec<String> {
        [
            "postgres",
            "redis",
            "rabbitmq",
            "vault",
            "catalog-1",
            "catalog-2",
            "payments",
            "checkout",
            "identity",
            "bff",
            "claims",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn a_valid_schedule_parses_with_every_kind() {
        let f = parse(OK, "f.toml", MIN).unwrap();
        let kinds: Vec<Kind> = f.iter().map(|f| *f.kind.get_ref()).collect();
        assert_eq!(
            kinds,
            [
                Kind::Kill,
                Kind::Restart,
                Kind::Pause,
                Kind::Kill,
                Kind::RevokeLease,
                Kind::Chaos
            ]
        );
        assert_eq!(
            f[3].window(),
            Some(schedule::DEFAULT_DOWN),
            "a kill's default down time"
        );
        assert_eq!(f[4].window(), None);
    }

    #[test]
    fn an_unknown_field_or_kind_names_the_file_line_and_field() {
        let e = err(&OK.replace("at = \"30s\"", "at = \"30s\"\nsignal = 9"));
        assert!(e.starts_with("f.toml:14: faults.signal: "), "{e}");
        assert!(e.contains("unknown field `signal`"), "{e}");
        let e = err(&OK.replace("kind = \"pause\"", "kind = \"freeze\""));
        assert!(e.starts_with("f.toml:17: faults.kind: "), "{e}");
        assert!(
            e.contains("unknown variant `freeze`") && e.contains("revoke_lease"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_duration_names_its_field() {
        let e = err(&OK.replace("every = \"15s\"", "every = \"often\""));
        assert!(e.starts_with("f.toml:6: faults.every: "), "{e}");
        assert!(e.contains("not a duration"), "{e}");
    }

    #[test]
    fn a_fault_after_the_load_or_without_its_window_is_refused_naming_the_entry() {
        let e = err(&OK.replace("at = \"50s\"", "at = \"60s\""));
        assert!(e.starts_with("f.toml:35: faults[5].at: "), "{e}");
        assert!(e.contains("not before the load's end"), "{e}");
        let e = err(&OK.replace("at = \"20s\"\nfor = \"3s\"", "at = \"20s\""));
        assert!(e.contains("faults[2].for: a pause needs `for`"), "{e}");
        let e = err(&OK.replace("at = \"5s\"", "at = \"5s\"\nfor = \"1s\""));
        assert!(
            e.contains("faults[4].for: a revoke_lease has no window"),
            "{e}"
        );
    }

    #[test]
    fn overlapping_repeats_and_wide_jitter_are_refused() {
        let e = err(&OK.replace("every = \"15s\"", "every = \"5s\""));
        assert!(
            e.contains("faults[0].every") && e.contains("repeats would overlap"),
            "{e}"
        );
        let e = err(&OK.replace("jitter = \"2s\"", "jitter = \"8s\""));
        assert!(
            e.contains("faults[0].jitter") && e.contains("half of every"),
            "{e}"
        );
        let e = err(&OK.replace("at = \"40s\"", "at = \"40s\"\ncount = 2"));
        assert!(e.contains("faults[3].count: `count` needs `every`"), "{e}");
    }

    #[test]
    fn mode_and_chaos_belong_to_their_kinds() {
        let e = err(&OK.replace("target = \"postgres\"", "target = \"redis\""));
        assert!(
            e.contains("faults[1].mode: only a restart of postgres"),
            "{e}"
        );
        let e = err(&OK.replace("error_rate = 0.2", "error_rate = 2.0"));
        assert!(
            e.contains("faults[5].chaos: error_rate and abort_rate"),
            "{e}"
        );
        let e = err(&OK.replace(
            "chaos = { error_rate = 0.2, latency_ms = 30 }",
            "chaos = { }",
        ));
        assert!(e.contains("faults[5].chaos: does nothing"), "{e}");
        let e = err(&OK.replace("target = \"identity\"", "target = \"Identity\""));
        assert!(e.contains("faults[4].target: `Identity`"), "{e}");
    }

    #[test]
    fn the_plan_expands_repeats_with_bounded_jitter_in_time_order() {
        let f = parse(OK, "f.toml", MIN).unwrap();
        let p = plan(&f, MIN, 7, &fleet()).unwrap();
        let kills: Vec<f64> = p
            .iter()
            .filter(|p| p.entry == 0)
            .map(|p| p.at.as_secs_f64())
            .collect();
        // 10, 25, 40, 55 (each ± 2 s): four times before the end.
        assert_eq!(kills.len(), 4, "{kills:?}");
        for (k, nominal) in kills.iter().zip([10.0, 25.0, 40.0, 55.0]) {
            assert!((k - nominal).abs() <= 2.0, "{kills:?}");
        }
        assert!(
            kills.iter().any(|k| k.fract() != 0.0),
            "jitter moved them: {kills:?}"
        );
        assert!(p.windows(2).all(|w| w[0].at <= w[1].at), "time order");
        assert_eq!(p.len(), 4 + 5);
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let f = parse(OK, "f.toml", MIN).unwrap();
        let a = plan(&f, MIN, 42, &fleet()).unwrap();
        assert_eq!(a, plan(&f, MIN, 42, &fleet()).unwrap());
        let differs = (0..20u64).any(|s| plan(&f, MIN, s, &fleet()).unwrap() != a);
        assert!(differs);
    }

    #[test]
    fn count_and_until_bound_the_repeats() {
        let text = OK.replace("for = \"2s\"", "for = \"2s\"\ncount = 2");
        let f = parse(&text, "f.toml", MIN).unwrap();
        assert_eq!(
            plan(&f, MIN, 1, &fleet())
                .unwrap()
                .iter()
                .filter(|p| p.entry == 0)
                .count(),
            2
        );
        let text = OK.replace("for = \"2s\"", "for = \"2s\"\nuntil = \"30s\"");
        let f = parse(&text, "f.toml", MIN).unwrap();
        assert_eq!(
            plan(&f, MIN, 1, &fleet())
                .unwrap()
                .iter()
                .filter(|p| p.entry == 0)
                .count(),
            2
        );
    }

    #[test]
    fn a_service_resolves_to_one_of_its_replicas_and_an_instance_to_itself() {
        let fleet = fleet();
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..32 {
            let mut rng = StdRng::seed_from_u64(seed);
            seen.insert(resolve("catalog", &fleet, &mut rng).unwrap());
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            ["catalog-1", "catalog-2"]
        );
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(resolve("catalog-2", &fleet, &mut rng).unwrap(), "catalog-2");
        assert_eq!(resolve("payments", &fleet, &mut rng).unwrap(), "payments");
        let e = resolve("cat", &fleet, &mut rng).unwrap_err();
        assert!(
            e.contains("no component or service `cat`") && e.contains("catalog-1"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_target_fails_the_plan_naming_the_entry() {
        let text = OK.replace("target = \"payments\"", "target = \"paymnts\"");
        let f = parse(&text, "f.toml", MIN).unwrap();
        let e = plan(&f, MIN, 1, &fleet()).unwrap_err();
        assert!(
            e.starts_with("faults[0].target: no component or service `paymnts`"),
            "{e}"
        );
        let no_bff: Vec<String> = fleet().into_iter().filter(|c| c != "bff").collect();
        let f = parse(OK, "f.toml", MIN).unwrap();
        assert!(
            plan(&f, MIN, 1, &no_bff)
                .unwrap_err()
                .contains("faults[5]: a chaos fault needs the fleet's BFF")
        );
        let text = OK.replace(
            "target = \"catalog\"\nat = \"50s\"",
            "target = \"nosuch\"\nat = \"50s\"",
        );
        let f = parse(&text, "f.toml", MIN).unwrap();
        let e = plan(&f, MIN, 1, &fleet()).unwrap_err();
        assert!(
            e.starts_with("faults[5].target: no component or service `nosuch`"),
            "{e}"
        );
    }

    #[test]
    fn overlapping_chaos_windows_are_refused() {
        let text = format!(
            "{OK}\n[[faults]]\nkind = \"chaos\"\ntarget = \"claims\"\nat = \"52s\"\nfor = \"2s\"\nchaos = {{ abort_rate = 0.1 }}\n"
        );
        let f = parse(&text, "f.toml", MIN).unwrap();
        let e = plan(&f, MIN, 1, &fleet()).unwrap_err();
        assert!(
            e.contains("faults[6]") && e.contains("one chaos set at a time"),
            "{e}"
        );
    }
}
