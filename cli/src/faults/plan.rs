//! The seeded planner: a schedule's entries expanded into concrete faults,
//! each at its own time on one named component. "every 10s ± 2s" becomes
//! 10.7 s, 19.1 s, 31.8 s ...; `catalog` becomes `catalog-2`. The same seed
//! and the same fleet give the same plan, so a run can be replayed.
//!
//! Pure: the fleet's component names come in as a list, nothing is read.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::schedule::{ChaosSpec, FaultSpec, Kind, PgMode};

/// One fault, ready to execute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Planned {
    /// Its entry in the schedule (`faults[i]`).
    pub entry: usize,
    /// Since the load began.
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    pub kind: Kind,
    /// As the entry wrote it (`catalog`).
    pub target: String,
    /// What it acts on: a fleet component (`catalog-2`); for chaos, what the
    /// BFF is told (the target as written).
    pub component: String,
    /// How long it holds (kill: down before the restart).
    #[serde(serialize_with = "opt_secs")]
    pub window: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<PgMode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chaos: Option<ChaosSpec>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl Planned {
    /// `kill payments`, `restart postgres (immediate)`, `chaos catalog`.
    pub fn label(&self) -> String {
        let mode = match self.mode {
            Some(PgMode::Immediate) => " (immediate)",
            Some(PgMode::Fast) => " (fast)",
            None => "",
        };
        format!("{} {}{mode}", self.kind.name(), self.component)
    }

    /// When it stops holding (its start for an instant fault).
    pub fn ends(&self) -> Duration {
        self.at + self.window.unwrap_or(Duration::ZERO)
    }
}

/// The times of one entry: `at`, then every `every` up to `until` (default
/// `duration`, exclusive) and at most `count`, each moved by a uniform draw
/// from ±`jitter` (never below 0, never at or past the load's end).
pub fn times(f: &FaultSpec, duration: Duration, rng: &mut StdRng) -> Vec<Duration> {
    let at = f.at.get_ref().0;
    let until = f.until.as_ref().map_or(duration, |u| u.get_ref().0);
    let count = f.count.as_ref().map_or(u32::MAX, |c| *c.get_ref());
    let jitter = f.jitter();
    let mut out = Vec::new();
    let mut nominal = at;
    loop {
        let t =
            jittered(nominal, jitter, rng).min(duration.saturating_sub(Duration::from_millis(1)));
        out.push(t);
        let Some(every) = f.every() else { break };
        nominal += every;
        if out.len() as u32 >= count || nominal > until || nominal >= duration {
            break;
        }
    }
    out
}

fn jittered(t: Duration, jitter: Duration, rng: &mut StdRng) -> Duration {
    if jitter.is_zero() {
        return t;
    }
    let j = jitter.as_secs_f64();
    let d = rng.random_range(-j..=j);
    Duration::from_secs_f64((t.as_secs_f64() + d).max(0.0))
}

/// Picks the component a target names: itself when the fleet has a
/// component of that name, else one of its replicas (`catalog-1`,
/// `catalog-2`, ...) drawn by `rng`.
pub fn resolve(target: &str, components: &[String], rng: &mut StdRng) -> Result<String, String> {
    if components.iter().any(|c| c == target) {
        return Ok(target.to_owned());
    }
    let replicas: Vec<&String> = components
        .iter()
        .filter(|c| {
            c.strip_prefix(target)
                .and_then(|r| r.strip_prefix('-'))
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    if replicas.is_empty() {
        return Err(format!(
            "no component or service `{target}` in the fleet; it has: {}",
            components.join(", ")
        ));
    }
    Ok(replicas[rng.random_range(0..replicas.len())].clone())
}

/// Every entry's faults in time order. `components` are the fleet's
/// (fleet.json's names); an error names the entry (`faults[1].target: …`).
pub fn plan(
    faults: &[FaultSpec],
    duration: Duration,
    seed: u64,
    components: &[String],
) -> Result<Vec<Planned>, String> {
    // One stream per entry: adding an entry does not move the others.
    let mut out = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        let mut rng =
            StdRng::seed_from_u64(seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i as u64 + 1)));
        let kind = *f.kind.get_ref();
        let target = f.target.get_ref();
        if kind == Kind::Chaos
            && !components
                .iter()
                .any(|c| c == "bff" || c.starts_with("bff-"))
        {
            return Err(format!(
                "faults[{i}]: a chaos fault needs the fleet's BFF, and this fleet runs none"
            ));
        }
        for at in times(f, duration, &mut rng) {
            let component = match kind {
                // The BFF takes a service (every replica) or an instance:
                // the target as written, once the fleet is seen to have it.
                Kind::Chaos => resolve(target, components, &mut rng)
                    .map(|_| target.clone())
                    .map_err(|e| format!("faults[{i}].target: {e}"))?,
                _ => resolve(target, components, &mut rng)
                    .map_err(|e| format!("faults[{i}].target: {e}"))?,
            };
            out.push(Planned {
                entry: i,
                at,
                kind,
                target: target.clone(),
                component,
                window: f.window(),
                mode: f.mode.as_ref().map(|m| *m.get_ref()),
                chaos: f.chaos.as_ref().map(|c| c.get_ref().clone()),
            });
        }
    }
    out.sort_by_key(|p| (p.at, p.entry));
    check_chaos_apart(&out)?;
    Ok(out)
}

/// The BFF holds one set of chaos faults at a time (a new one replaces the
/// old): two chaos windows must not overlap.
fn check_chaos_apart(plan: &[Planned]) -> Result<(), String> {
    let chaos: Vec<&Planned> = plan.iter().filter(|p| p.kind == Kind::Chaos).collect();
    for w in chaos.windows(2) {
        if w[1].at < w[0].ends() {
            return Err(format!(
                "faults[{}] (chaos at {:.1}s) starts before faults[{}] (chaos until {:.1}s) ends: the BFF holds one chaos set at a time",
                w[1].entry,
                w[1].at.as_secs_f64(),
                w[0].entry,
                w[0].ends().as_secs_f64()
            ));
        }
    }
    Ok(())
}
