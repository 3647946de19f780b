//! A fault schedule as written: `[[faults]]` entries in a load profile, or
//! in a file of their own (`storefront load --faults FILE`). Hand-edited, so
//! every error names the entry's field (and, through the caller, the file
//! and line).
//!
//! ```toml
//! [[faults]]
//! kind = "kill"          # kill | pause | restart | revoke_lease | chaos
//! target = "payments"    # a component, or a service (`catalog`: one replica, seeded)
//! at = "10s"             # since the load began
//! every = "15s"          # optional: again and again ...
//! jitter = "2s"          # ... each time ± up to this (seeded)
//! until = "50s"          # optional: no later than this (default: the load's end)
//! count = 3              # optional: at most this many times
//! for = "2s"             # kill: down this long; pause and chaos: the window
//! mode = "immediate"     # restart of postgres: fast (default) or immediate
//! chaos = { error_rate = 0.3, latency_ms = 50 }   # chaos only: the BFF fault
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::run::dur::Dur;

/// What a fault does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// SIGKILL (a crash), then start it again after `for` (default 1 s).
    Kill,
    /// SIGSTOP its process group for `for`, then SIGCONT.
    Pause,
    /// A graceful stop and start (Postgres: fast, or `mode = "immediate"`).
    Restart,
    /// Revoke the service's current Vault database lease (its Postgres
    /// login): the service must notice and get a new one by itself.
    RevokeLease,
    /// The BFF's fault injection on calls to the target, for `for`.
    Chaos,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Restart => "restart",
            Kind::RevokeLease => "revoke_lease",
            Kind::Chaos => "chaos",
        }
    }
}

/// How Postgres goes down in a `restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PgMode {
    Fast,
    Immediate,
}

/// The BFF fault of a `chaos` entry (as `storefront chaos set` takes it).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosSpec {
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub jitter_ms: u64,
    /// Share of calls answered with `error_status` instead of being sent (0..=1).
    #[serde(default)]
    pub error_rate: f64,
    #[serde(default = "default_status")]
    pub error_status: u16,
    /// Share of calls failed as a reset connection (0..=1).
    #[serde(default)]
    pub abort_rate: f64,
}

fn default_status() -> u16 {
    503
}

/// One `[[faults]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: Spanned<Kind>,
    pub target: Spanned<String>,
    pub at: Spanned<Dur>,
    #[serde(default)]
    pub every: Option<Spanned<Dur>>,
    #[serde(default)]
    pub jitter: Option<Spanned<Dur>>,
    #[serde(default)]
    pub until: Option<Spanned<Dur>>,
    #[serde(default)]
    pub count: Option<Spanned<u32>>,
    /// `for`: how long the fault holds (kill: down before the restart).
    #[serde(default, rename = "for")]
    pub window: Option<Spanned<Dur>>,
    #[serde(default)]
    pub mode: Option<Spanned<PgMode>>,
    #[serde(default)]
    pub chaos: Option<Spanned<ChaosSpec>>,
}

/// A `--faults FILE`: nothing but `[[faults]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFile {
    pub faults: Vec<FaultSpec>,
}

/// A kill's target stays down this long unless `for` says otherwise.
pub const DEFAULT_DOWN: Duration = Duration::from_secs(1);
/// The longest window a fault may hold.
pub const MAX_WINDOW: Duration = Duration::from_secs(120);
/// Repeats closer than this are refused (each one is a real restart).
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// What is wrong with an entry: the byte offset (for the line), the field
/// (`faults[2].every`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub at: usize,
    pub field: String,
    pub message: String,
}

impl FaultSpec {
    /// How long the fault holds: `for`, or a kill's default.
    pub fn window(&self) -> Option<Duration> {
        match (self.window.as_ref(), *self.kind.get_ref()) {
            (Some(w), _) => Some(w.get_ref().0),
            (None, Kind::Kill) => Some(DEFAULT_DOWN),
            (None, _) => None,
        }
    }

    pub fn every(&self) -> Option<Duration> {
        self.every.as_ref().map(|d| d.get_ref().0)
    }

    pub fn jitter(&self) -> Duration {
        self.jitter
            .as_ref()
            .map_or(Duration::ZERO, |d| d.get_ref().0)
    }
}

/// Checks every entry against itself and against the load's `duration`
/// (faults start while the load runs).
pub fn validate(faults: &[FaultSpec], duration: Duration) -> Result<(), Problem> {
    for (i, f) in faults.iter().enumerate() {
        validate_one(f, &format!("faults[{i}]"), duration)?;
    }
    Ok(())
}

fn problem<T>(s: &Spanned<T>, field: String, message: impl Into<String>) -> Problem {
    Problem {
        at: s.span().start,
        field,
        message: message.into(),
    }
}

fn validate_one(f: &FaultSpec, field: &str, duration: Duration) -> Result<(), Problem> {
    let kind = *f.kind.get_ref();
    let target = f.target.get_ref();
    if !is_target(target) {
        return Err(problem(
            &f.target,
            format!("{field}.target"),
            format!(
                "`{target}`: name a component as `storefront status` lists it (payments, redis, catalog-2) or a service (catalog: one replica, picked by the seed)"
            ),
        ));
    }
    let at = f.at.get_ref().0;
    if at >= duration {
        return Err(problem(
            &f.at,
            format!("{field}.at"),
            format!(
                "{at:?} is not before the load's end ({duration:?}): a fault starts while the load runs"
            ),
        ));
    }
    match (kind, &f.window) {
        (Kind::Pause | Kind::Chaos, None) => {
            return Err(problem(
                &f.kind,
                format!("{field}.for"),
                format!("a {} needs `for`: how long it holds", kind.name()),
            ));
        }
        (Kind::Restart | Kind::RevokeLease, Some(w)) => {
            return Err(problem(
                w,
                format!("{field}.for"),
                format!(
                    "a {} has no window (it happens once, at `at`); use kill or pause for a time down",
                    kind.name()
                ),
            ));
        }
        (_, Some(w)) if w.get_ref().0.is_zero() || w.get_ref().0 > MAX_WINDOW => {
            return Err(problem(
                w,
                format!("{field}.for"),
                format!("give a window above 0 and at most {MAX_WINDOW:?}"),
            ));
        }
        _ => {}
    }
    if let Some(m) = &f.mode
        && (kind != Kind::Restart || target != "postgres")
    {
        return Err(problem(
            m,
            format!("{field}.mode"),
            "only a restart of postgres has a mode (fast or immediate)",
        ));
    }
    match (&f.chaos, kind) {
        (Some(c), Kind::Chaos) => check_chaos(c, field)?,
        (Some(c), _) => {
            return Err(problem(
                c,
                format!("{field}.chaos"),
                format!(
                    "only kind = \"chaos\" takes a chaos table, not {}",
                    kind.name()
                ),
            ));
        }
        (None, Kind::Chaos) => {
            return Err(problem(
                &f.kind,
                format!("{field}.chaos"),
                "a chaos fault needs `chaos = { error_rate = …, latency_ms = …, abort_rate = … }`",
            ));
        }
        (None, _) => {}
    }
    validate_repeat(f, field, duration)
}

fn validate_repeat(f: &FaultSpec, field: &str, duration: Duration) -> Result<(), Problem> {
    let at = f.at.get_ref().0;
    let Some(every) = &f.every else {
        if let Some(u) = &f.until {
            return Err(problem(
                u,
                format!("{field}.until"),
                "`until` needs `every`",
            ));
        }
        if let Some(c) = &f.count {
            return Err(problem(
                c,
                format!("{field}.count"),
                "`count` needs `every`",
            ));
        }
        return Ok(());
    };
    let e = every.get_ref().0;
    if e < MIN_EVERY {
        return Err(problem(
            every,
            format!("{field}.every"),
            format!("{e:?}: repeat at most once a second"),
        ));
    }
    let jitter = f.jitter();
    if let Some(j) = &f.jitter
        && jitter * 2 >= e
    {
        return Err(problem(
            j,
            format!("{field}.jitter"),
            format!(
                "±{jitter:?} is not under half of every ({e:?}): the order of the repeats must not change"
            ),
        ));
    }
    // Each repeat ends before the next may start.
    let window = f.window().unwrap_or(Duration::ZERO);
    if window + jitter * 2 >= e {
        return Err(problem(
            every,
            format!("{field}.every"),
            format!(
                "{e:?} is not longer than the window ({window:?}) plus twice the jitter ({jitter:?}): repeats would overlap"
            ),
        ));
    }
    if let Some(u) = &f.until {
        let until = u.get_ref().0;
        if until < at || until > duration {
            return Err(problem(
                u,
                format!("{field}.until"),
                format!("{until:?} is not between at ({at:?}) and the load's end ({duration:?})"),
            ));
        }
    }
    if let Some(c) = &f.count
        && *c.get_ref() == 0
    {
        return Err(problem(c, format!("{field}.count"), "must be at least 1"));
    }
    Ok(())
}

fn check_chaos(c: &Spanned<ChaosSpec>, field: &str) -> Result<(), Problem> {
    let s = c.get_ref();
    let rate = |v: f64| (0.0..=1.0).contains(&v);
    if !rate(s.error_rate) || !rate(s.abort_rate) {
        return Err(problem(
            c,
            format!("{field}.chaos"),
            "error_rate and abort_rate are shares between 0 and 1",
        ));
    }
    if !(400..=599).contains(&s.error_status) {
        return Err(problem(
            c,
            format!("{field}.chaos.error_status"),
            "an injected error is a 4xx or 5xx status",
        ));
    }
    if s.latency_ms == 0 && s.jitter_ms == 0 && s.error_rate == 0.0 && s.abort_rate == 0.0 {
        return Err(problem(
            c,
            format!("{field}.chaos"),
            "does nothing: give latency_ms, jitter_ms, error_rate or abort_rate",
        ));
    }
    Ok(())
}

/// `payments`, `catalog-2`, `postgres`: lowercase letters, digits, `_`, `-`.
fn is_target(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}
