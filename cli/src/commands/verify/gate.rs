//! The gate's registry: every check, in order. An experiment arm is an
//! [`Arm`] (its experiment, what the gate expects of it, its command
//! line); a load arm is a load profile.

use anyhow::{Context, Result};

use super::judge::Ran;
use crate::experiments::experiment::{Arm, Env, Expect, arm};
use crate::experiments::{breaker, flood, hostile, outbox, race, replay, rotate, saga};
use crate::load::profile::LoadProfile;

/// One check of the gate.
pub enum Check {
    Experiment(Arm),
    /// A load profile (its faults, if any, through the fleet's control plane).
    Load {
        name: &'static str,
        profile: &'static str,
    },
}

impl Check {
    pub fn name(&self) -> &'static str {
        match self {
            Check::Experiment(a) => a.name,
            Check::Load { name, .. } => name,
        }
    }

    pub fn expect(&self) -> Expect {
        match self {
            Check::Experiment(a) => a.expect,
            Check::Load { .. } => Expect::Pass,
        }
    }

    pub async fn run(&self, env: &Env, seed: u64) -> Result<Ran> {
        match self {
            Check::Experiment(a) => Ok(a.run(env, seed).await?.into()),
            Check::Load { profile, .. } => load(env, seed, profile).await,
        }
    }
}

/// Every arm's command line parses: checked before any fleet is booted,
/// so a wrong flag in the gate costs no run.
pub fn arguments_parse(gate: &[Check]) -> Result<()> {
    for c in gate {
        if let Check::Experiment(a) = c {
            (a.parses)(a.args).with_context(|| format!("verify's arm `{}`", a.name))?;
        }
    }
    Ok(())
}

/// The checks `only` names, in the gate's order (every check when `only`
/// is empty), and the names of those it leaves out. A name selects the check of that exact name, or every check
/// whose name starts with it as a word (`race` selects `race` and
/// `race --control`; `load` both load profiles). A name that selects
/// nothing is a usage error that lists the names there are.
pub fn select(gate: Vec<Check>, only: &[String]) -> Result<(Vec<Check>, Vec<&'static str>)> {
    let picks = |c: &Check, name: &str| {
        let n = name.trim();
        c.name() == n || c.name().split_whitespace().next() == Some(n)
    };
    if let Some(unknown) = only.iter().find(|o| !gate.iter().any(|c| picks(c, o))) {
        let mut families: Vec<&str> = gate
            .iter()
            .filter_map(|c| c.name().split_whitespace().next())
            .collect();
        families.dedup();
        return Err(crate::exit::Exit::error(
            crate::exit::USAGE,
            format!(
                "--only {unknown:?} names no check of the gate; it has {} (or a check's whole name, as `storefront verify` lists it)",
                families.join(", ")
            ),
        ));
    }
    let (run, left): (Vec<Check>, Vec<Check>) = gate
        .into_iter()
        .partition(|c| only.is_empty() || only.iter().any(|o| picks(c, o)));
    Ok((run, left.iter().map(Check::name).collect()))
}

fn load_arm(name: &'static str, profile: &'static str) -> Check {
    Check::Load { name, profile }
}

/// Every check of the gate, in order: one line per arm. A control arm
/// (`Fail`) must be caught by its checkers.
#[rustfmt::skip]
pub fn gate() -> Vec<Check> {
    use Check::Experiment as E;
    use Expect::{Fail, Pass};
    vec![
        E(arm::<race::Race>("race", Pass, &["--n", "20", "--rounds", "2"])),
        E(arm::<race::Race>("race --control", Fail, &["--n", "20", "--control"])),
        E(arm::<replay::Replay>("replay", Pass, &["--n", "10", "--keys", "5"])),
        E(arm::<replay::Replay>("replay --control", Fail, &["--n", "10", "--keys", "5", "--control"])),
        E(arm::<flood::Flood>("flood", Pass, &["--duration", "3s"])),
        E(arm::<flood::Flood>("flood with a wrong expected capacity", Fail, &["--duration", "3s", "--expect-capacity", "20"])),
        E(arm::<breaker::Breaker>("breaker", Pass, &[])),
        E(arm::<rotate::Rotate>("rotate", Pass, &["--duration", "10s", "--rps", "30", "--ttl", "4s"])),
        E(arm::<rotate::Rotate>("rotate --control", Fail, &["--duration", "8s", "--rps", "30", "--ttl", "4s", "--control"])),
        E(arm::<saga::Saga>("saga --fail-at mixed", Pass, &["--orders", "20", "--fail-at", "mixed"])),
        // Kills payments and freezes RabbitMQ; the naive dual write must lose or invent events.
        E(arm::<outbox::Outbox>("outbox", Pass, &[])),
        E(arm::<outbox::Outbox>("outbox --control", Fail, &["--control"])),
        load_arm("load --profile smoke", "smoke"),
        // Faults on a schedule; every fault injected, every invariant PASS.
        load_arm("load --profile checkout-faults-short", "checkout-faults-short"),
        // Last: its password guessing leaves identity's throttles warm.
        E(arm::<hostile::Hostile>("hostile", Pass, &["--per-class", "20", "--guesses", "100"])),
        E(arm::<hostile::Hostile>("hostile --control", Fail, &["--per-class", "2", "--guesses", "10", "--control"])),
    ]
}

/// A load profile as a check; its clean-up runs after the report and is a
/// line of it.
async fn load(e: &Env, seed: u64, profile: &str) -> Result<Ran> {
    let (profile, _) = LoadProfile::load(&e.ctx.root, profile)?;
    let opts = crate::load::Options {
        seed,
        quiet: true,
        fleet: Some(e.ctx.clone()),
        ..Default::default()
    };
    let mut rep = crate::load::run(&e.lab, profile, &opts).await?;
    crate::load::clean_up(&e.lab, &mut rep).await;
    Ok(rep.into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::experiments::experiment;

    #[test]
    fn the_gate_runs_every_experiment_arm_and_the_smoke_load() {
        let names: Vec<&str> = gate().iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "race",
                "race --control",
                "replay",
                "replay --control",
                "flood",
                "flood with a wrong expected capacity",
                "breaker",
                "rotate",
                "rotate --control",
                "saga --fail-at mixed",
                "outbox",
                "outbox --control",
                "load --profile smoke",
                "load --profile checkout-faults-short",
                "hostile",
                "hostile --control"
            ]
        );
        let fails: Vec<&str> = gate()
            .iter()
            .filter(|c| c.expect() == Expect::Fail)
            .map(|c| c.name())
            .collect();
        assert_eq!(
            fails,
            [
                "race --control",
                "replay --control",
                "flood with a wrong expected capacity",
                "rotate --control",
                "outbox --control",
                "hostile --control"
            ]
        );
    }

    fn names(checks: &[Check]) -> Vec<&'static str> {
        checks.iter().map(|c| c.name()).collect()
    }

    #[test]
    fn only_selects_by_family_or_whole_name_in_the_gates_order() {
        assert_eq!(names(&select(gate(), &[]).unwrap().0), names(&gate()));
        let only = ["load --profile smoke".to_string(), "race".to_string()];
        assert_eq!(
            names(&select(gate(), &only).unwrap().0),
            ["race", "race --control", "load --profile smoke"]
        );
        let (load, _) = select(gate(), &["load".to_string()]).unwrap();
        assert_eq!(
            names(&load),
            [
                "load --profile smoke",
                "load --profile checkout-faults-short"
            ]
        );
    }

    #[test]
    fn only_with_a_name_that_selects_nothing_is_a_usage_error_listing_the_names() {
        for bad in ["rac", "", "race --n 20", "Race"] {
            let Err(e) = select(gate(), &["race".to_string(), bad.to_string()]) else {
                panic!("{bad:?} selected a check");
            };
            let exit = e.downcast_ref::<crate::exit::Exit>().expect("an Exit");
            assert_eq!(exit.code, crate::exit::USAGE, "{bad:?}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(
                msg.contains("race, replay, flood, breaker, rotate, saga, outbox, load, hostile"),
                "{msg}"
            );
        }
    }

    #[test]
    fn every_arms_command_line_parses_as_its_experiments_parameters() {
        arguments_parse(&gate()).unwrap_or_else(|e| panic!("{e:#}"));
        let p: race::Params = experiment::parse("race", &["--n", "20", "--control"]).unwrap();
        assert!(p.control && p.n == 20);
        let h: hostile::Params = experiment::parse(
            "hostile",
            &["--per-class", "2", "--guesses", "10", "--control"],
        )
        .unwrap();
        assert!(h.control && h.per_class == 2 && h.guesses == 10);
        let o: outbox::Params = experiment::parse("outbox", &["--control"]).unwrap();
        assert!(o.control);
    }

    #[test]
    fn an_arm_whose_arguments_do_not_parse_is_caught_by_its_parses() {
        let bad = arm::<race::Race>("race", Expect::Pass, &["--nope"]);
        let e = arguments_parse(&[Check::Experiment(bad)]).unwrap_err();
        assert!(format!("{e:#}").contains("--nope"), "{e:#}");
    }

    #[test]
    fn the_gate_fault_run_kills_payments_restarts_redis_and_rabbitmq_and_revokes_a_lease_within_30s()
     {
        use crate::faults::schedule::Kind;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let (p, _) = LoadProfile::load(&root, "checkout-faults-short").unwrap();
        assert!(p.duration.0 <= Duration::from_secs(30), "{:?}", p.duration);
        let faults: Vec<(Kind, &str)> = p
            .faults
            .iter()
            .map(|f| (*f.kind.get_ref(), f.target.get_ref().as_str()))
            .collect();
        for want in [
            (Kind::Kill, "payments"),
            (Kind::Restart, "redis"),
            (Kind::Restart, "rabbitmq"),
            (Kind::RevokeLease, "identity"),
        ] {
            assert!(faults.contains(&want), "{want:?} missing from {faults:?}");
        }
        assert!(
            !p.invariants.is_empty(),
            "the fault run judges the shop's invariants"
        );
    }
}
