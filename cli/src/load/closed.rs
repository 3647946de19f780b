//! The closed model: `users` users, started at `ramp` per second, each
//! looping through its scenario with think time, for the profile's
//! duration after the last one started.
//!
//! By default each user is a task of ours on its own keep-alive
//! connections (`target::Conns`), timing each request, body included, into
//! the recorder. Users are given scenarios by weight, round robin, and a
//! pass runs each transaction `weight` times in order with think time
//! after each, as goose schedules them. goose itself drove the users until
//! a profile showed it was most of the generator's cost (its per-request
//! metrics, their channel and aggregation, a pooled client per user):
//! 64 users reached 0.61× wrk's throughput on one cached GET.
//!
//! With `--goose-html` goose drives them as before (its HTML report needs
//! its own books): on our tokio runtime, built with
//! `initialize_with_config` (never `initialize()`, which parses our argv),
//! its metrics the cross-check of ours (same request counts).

use std::borrow::Cow;
use std::path::Path;
use std::sync::{Arc, LazyLock, Once};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use goose::config::GooseConfiguration;
use goose::prelude::*;
use hdrhistogram::Histogram;

use super::history::{self, Op, Outcome};
use super::login::Session;
use super::plan::{ScenarioPlan, Shared};
use super::profile::Method;
use super::recorder::{Sample, TxTally};
use super::target::Conns;
use super::template::Bindings;
use crate::run::hdr::histogram;

/// goose's verdict on one transaction's requests, for the cross-check.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GooseView {
    /// Real requests (goose's raw samples).
    pub requests: u64,
    /// Synthetic requests goose's coordinated-omission mitigation added to
    /// its success/failure counters.
    pub backfilled: u64,
    /// Failed real requests; unknowable once goose backfilled (its synthetic
    /// requests count as successes or failures like the ones they copy).
    pub failures: Option<u64>,
    /// goose's own percentiles (time to first byte, bucketed).
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// With goose's coordinated-omission mitigation (backfilled requests).
    pub co_p99_ms: Option<f64>,
}

pub struct ClosedRun {
    /// One view per transaction, in plan order (`None`: goose saw no
    /// request); empty when our own users ran (no goose, nothing to cross-check).
    pub goose: Vec<Option<GooseView>>,
    pub took: Duration,
}

/// Runs the closed model: our users, or goose's when its HTML report is
/// wanted (`html`).
pub async fn run(shared: Arc<Shared>, html: Option<&Path>) -> Result<ClosedRun> {
    match html {
        None => Ok(users(shared).await),
        Some(h) => goose_run(shared, Some(h)).await,
    }
}

/// Our own users: one task each, started `1/ramp` s apart; each stops at
/// its next request once the duration after the ramp is over.
async fn users(shared: Arc<Shared>) -> ClosedRun {
    let p = &shared.plan.profile;
    let n = p.users as usize;
    let ramp = p.ramp();
    let start = tokio::time::Instant::now();
    let stop = start + Duration::from_secs_f64(n as f64 / ramp) + p.duration.0;
    let order = round_robin(&shared.plan.scenarios);
    let mut set = tokio::task::JoinSet::new();
    for u in 0..n {
        let at = start + Duration::from_secs_f64(u as f64 / ramp);
        set.spawn(user(shared.clone(), u, order[u % order.len()], at, stop));
    }
    while set.join_next().await.is_some() {}
    ClosedRun {
        goose: Vec::new(),
        took: start.elapsed(),
    }
}

/// Scenario per user slot: each scenario `weight` times, interleaved
/// (weights 2, 1, 1 → 0, 1, 2, 0), as goose's round-robin scheduler
/// allots users.
pub fn round_robin(scenarios: &[ScenarioPlan]) -> Vec<usize> {
    let rounds = scenarios.iter().map(|s| s.weight).max().unwrap_or(0);
    let order: Vec<usize> = (0..rounds)
        .flat_map(|r| {
            scenarios
                .iter()
                .enumerate()
                .filter(move |(_, s)| s.weight > r)
                .map(|(i, _)| i)
        })
        .collect();
    if order.is_empty() { vec![0] } else { order }
}

async fn user(
    shared: Arc<Shared>,
    idx: usize,
    s: usize,
    at: tokio::time::Instant,
    stop: tokio::time::Instant,
) {
    tokio::time::sleep_until(at).await;
    let mut b = Bindings::new(shared.seed, idx as u64, idx);
    let mut conns = Conns::default();
    let scenario = &shared.plan.scenarios[s];
    'passes: loop {
        b.reset();
        for ti in scenario.pass(&shared.plan) {
            if tokio::time::Instant::now() >= stop {
                break 'passes;
            }
            let tx = &shared.plan.txs[ti];
            // Through the BFF the user's account's token; a failed login is
            // counted there (and fails the run) and this transaction sends nothing.
            let session = match &shared.logins {
                Some(logins) => logins.session(tx.login, idx).await,
                None => None,
            };
            if shared.logins.is_none() || session.is_some() {
                exchange(&shared, &mut conns, ti, idx, &mut b, session.as_ref(), None).await;
            }
            let think = shared.plan.think(b.rng());
            if think > Duration::ZERO {
                tokio::time::sleep_until(stop.min(tokio::time::Instant::now() + think)).await;
            }
        }
    }
}

/// Outcome labels of the statuses, made once (`"200"`, ...).
static STATUS: LazyLock<Vec<String>> = LazyLock::new(|| (0..600).map(|s| s.to_string()).collect());

fn status_label(status: u16, replayed: bool) -> Cow<'static, str> {
    match STATUS.get(usize::from(status)) {
        Some(s) if !replayed => Cow::Borrowed(s.as_str()),
        _ => Cow::Owned(outcome_label(status, replayed)),
    }
}

/// One request of transaction `ti` by `user` on its connections: rendered
/// from the pass's bindings, sent, its body read, recorded (and, with
/// `--history`, written). `due` is when it should have gone out (open
/// model: the corrected latency counts from it). Returns whether it
/// succeeded and when it completed.
pub async fn exchange(
    shared: &Shared,
    conns: &mut Conns,
    ti: usize,
    user: usize,
    b: &mut Bindings,
    session: Option<&Session>,
    due: Option<tokio::time::Instant>,
) -> (bool, tokio::time::Instant) {
    let tx = &shared.plan.txs[ti];
    let r = tx.render(&shared.targets, &shared.world, b, user, session);
    let history = shared.recorder.history();
    let noted = history.map(|_| {
        let key = r
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("idempotency-key"))
            .map(|(_, v)| v.clone());
        (history::now_us(), history::path_of(&r.url).to_owned(), key)
    });
    let sent = tokio::time::Instant::now();
    let result = conns.send(tx.method, &r.url, &r.headers, r.body).await;
    let now = tokio::time::Instant::now();
    let (outcome, ok) = match result {
        Ok(a) => (status_label(a.status, a.replayed), tx.is_success(a.status)),
        Err(f) => (Cow::Borrowed(f.label()), false),
    };
    shared.recorder.record(
        user,
        Sample {
            tx: ti,
            raw: now - sent,
            corrected: due.map(|d| now - d),
            outcome: &outcome,
            ok,
        },
    );
    if let (Some(h), Some((invoke_us, path, key))) = (history, noted) {
        let (scenario, name) = tx.label.split_once('/').unwrap_or(("", &tx.label));
        h.record(Op {
            invoke_us,
            complete_us: history::after(invoke_us, now - sent),
            scenario: scenario.to_owned(),
            tx: name.to_owned(),
            method: tx.method.as_str(),
            path,
            outcome: match result {
                Ok(a) => Outcome::Status(a.status),
                Err(f) => Outcome::Error(f.label().trim_start_matches("error: ").to_owned()),
            },
            replayed: result.is_ok_and(|a| a.replayed),
            key,
        });
    }
    (ok, now)
}

/// goose's users (for its HTML report).
async fn goose_run(shared: Arc<Shared>, html: Option<&Path>) -> Result<ClosedRun> {
    route_goose_logs();
    goose::reset_killswitch();
    let p = &shared.plan.profile;
    let mut cfg = GooseConfiguration::default();
    cfg.host = Some(shared.targets.any_base());
    cfg.users = Some(p.users as usize);
    cfg.increase_rate = Some(p.ramp().to_string());
    cfg.run_time = Some(p.duration.0.as_secs().to_string());
    cfg.quiet = 1;
    cfg.no_print_metrics = true;
    cfg.no_telnet = true;
    // Count the ramp too, as our recorder does: the cross-check compares totals.
    cfg.no_reset_metrics = true;
    cfg.co_mitigation = Some(GooseCoordinatedOmissionMitigation::Average);
    cfg.timeout = Some("10".into());
    if let Some(h) = html {
        cfg.report_file = vec![h.display().to_string()];
    }
    let mut attack = GooseAttack::initialize_with_config(cfg).map_err(goose_err)?;
    let think = p.think_time;
    for s in &shared.plan.scenarios {
        let mut sc = Scenario::new(&s.name)
            .set_weight(s.weight as usize)
            .map_err(goose_err)?;
        if think.max > Duration::ZERO {
            sc = sc.set_wait_time(think.min, think.max).map_err(goose_err)?;
        }
        for (pos, &ti) in s.txs.iter().enumerate() {
            let tx = &shared.plan.txs[ti];
            let t = transaction(shared.clone(), ti, pos == 0)
                .set_name(&tx.label)
                .set_sequence(pos + 1)
                .set_weight(tx.weight as usize)
                .map_err(goose_err)?;
            sc = sc.register_transaction(t);
        }
        attack = attack.register_scenario(sc);
    }
    let t = Instant::now();
    let metrics = {
        let _quiet = StdoutToStderr::new();
        attack.execute().await.map_err(goose_err)?
    };
    let took = t.elapsed();
    let goose = shared
        .plan
        .txs
        .iter()
        .map(|tx| {
            metrics
                .requests
                .get(&format!("{} {}", tx.method.as_str(), tx.label))
                .map(|a| {
                    let counted = (a.success_count + a.fail_count) as u64;
                    let real = a.raw_data.counter as u64;
                    let backfilled = counted.saturating_sub(real);
                    GooseView {
                        requests: real,
                        backfilled,
                        failures: (backfilled == 0).then_some(a.fail_count as u64),
                        p50_ms: a.raw_data.percentile_us(0.5) as f64 / 1000.0,
                        p99_ms: a.raw_data.percentile_us(0.99) as f64 / 1000.0,
                        co_p99_ms: a
                            .coordinated_omission_data
                            .as_ref()
                            .map(|c| c.percentile_us(0.99) as f64 / 1000.0),
                    }
                })
        })
        .collect();
    Ok(ClosedRun { goose, took })
}

fn goose_err(e: GooseError) -> anyhow::Error {
    anyhow!("goose: {e}")
}

fn goose_method(m: Method) -> GooseMethod {
    match m {
        Method::Get => GooseMethod::Get,
        Method::Post => GooseMethod::Post,
        Method::Put => GooseMethod::Put,
        Method::Patch => GooseMethod::Patch,
        Method::Delete => GooseMethod::Delete,
    }
}

/// Transaction `ti`; the scenario's first transaction starts a new pass
/// (its variables are drawn again).
fn transaction(shared: Arc<Shared>, ti: usize, first: bool) -> Transaction {
    Transaction::new(Arc::new(move |user: &mut GooseUser| {
        let shared = shared.clone();
        Box::pin(async move { one_request(&shared, ti, first, user).await })
    }))
}

async fn one_request(
    shared: &Shared,
    ti: usize,
    first: bool,
    user: &mut GooseUser,
) -> TransactionResult {
    let idx = user.weighted_users_index;
    if user.get_session_data::<Bindings>().is_none() {
        user.set_session_data(Bindings::new(shared.seed, idx as u64, idx));
    }
    let tx = &shared.plan.txs[ti];
    // Through the BFF the user's account's token; a failed login is counted
    // there (and fails the run) and this transaction sends nothing.
    let session = match &shared.logins {
        Some(logins) => match logins.session(tx.login, idx).await {
            Some(s) => Some(s),
            None => return Ok(()),
        },
        None => None,
    };
    let rendered = {
        let b = user.get_session_data_unchecked_mut::<Bindings>();
        if first {
            b.reset();
        }
        tx.render(&shared.targets, &shared.world, b, idx, session.as_ref())
    };
    let mut rb = user.get_request_builder(&goose_method(tx.method), &rendered.url)?;
    for (k, v) in &rendered.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    if let Some(body) = rendered.body {
        rb = rb.header("content-type", "application/json").body(body);
    }
    let req = GooseRequest::builder()
        .set_request_builder(rb)
        .name(tx.label.as_str())
        .build();
    let invoke_us = shared.recorder.history().map(|_| history::now_us());
    let t0 = Instant::now();
    let mut resp = user.request(req).await?;
    let answered = resp.response.as_ref().ok().map(|r| r.status().as_u16());
    let (outcome, ok) = match resp.response {
        Ok(r) => {
            let status = r.status().as_u16();
            let replayed = r.headers().get(REPLAYED).is_some_and(|v| v == "true");
            match r.bytes().await {
                Ok(_) => (outcome_label(status, replayed), tx.is_success(status)),
                Err(e) => (error_kind(e.is_timeout(), e.is_connect()), false),
            }
        }
        Err(ref e) => (error_kind(e.is_timeout(), e.is_connect()), false),
    };
    let took = t0.elapsed();
    shared.recorder.record(
        idx,
        Sample {
            tx: ti,
            raw: took,
            corrected: None,
            outcome: &outcome,
            ok,
        },
    );
    if let (Some(h), Some(invoke_us)) = (shared.recorder.history(), invoke_us) {
        let (scenario, name) = tx.label.split_once('/').unwrap_or(("", &tx.label));
        h.record(Op {
            invoke_us,
            complete_us: history::after(invoke_us, took),
            scenario: scenario.to_owned(),
            tx: name.to_owned(),
            method: tx.method.as_str(),
            path: history::path_of(&rendered.url).to_owned(),
            outcome: match outcome.strip_prefix("error: ") {
                Some(e) => Outcome::Error(e.to_owned()),
                None => Outcome::Status(answered.unwrap_or_default()),
            },
            replayed: outcome.ends_with(" replayed"),
            key: rendered
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("idempotency-key"))
                .map(|(_, v)| v.clone()),
        });
    }
    // goose judges by 2xx; make its books agree with the profile's `success`.
    if ok && !resp.request.success {
        user.set_success(&mut resp.request)?;
    } else if !ok && resp.request.success {
        return user.set_failure(&outcome, &mut resp.request, None, None);
    }
    Ok(())
}

/// The response header an idempotent server sets on a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";

/// `201`, or `201 replayed` when the server says it replayed a stored answer
/// (so `claims.one_row_per_key` counts only the first as a creation).
pub fn outcome_label(status: u16, replayed: bool) -> String {
    if replayed {
        format!("{status} replayed")
    } else {
        status.to_string()
    }
}

pub fn error_kind(timeout: bool, connect: bool) -> String {
    if timeout {
        "error: timeout".into()
    } else if connect {
        "error: connect".into()
    } else {
        "error: other".into()
    }
}

/// The closed model's correction for coordinated omission: a user blocked
/// by a slow response did not send the requests it would have sent at its
/// usual cadence. That cadence is the run's median latency plus the mean
/// think time; every request slower than it also stands for the requests
/// that would have been sent meanwhile (HdrHistogram's `record_correct`:
/// values L−E, L−2E, … down to E). Applied to each transaction's raw
/// histogram; returns the cadence used (µs).
pub fn correct(tallies: &mut [TxTally], think_mean: Duration) -> u64 {
    let mut all: Histogram<u64> = histogram();
    for t in tallies.iter() {
        all.add(&t.raw).expect("same bounds");
    }
    if all.is_empty() {
        return 0;
    }
    let cadence = all.value_at_quantile(0.5) + think_mean.as_micros() as u64;
    for t in tallies.iter_mut() {
        t.corrected = t.raw.clone_correct(cadence.max(1));
    }
    cadence
}

/// goose prints a few lines of its own on stdout whatever `quiet` says
/// (`All 4 users launched.`), where our report and `--json` go. While the
/// attack runs, file descriptor 1 points at stderr; dropping this restores it.
struct StdoutToStderr {
    saved: Option<std::os::fd::OwnedFd>,
}

impl StdoutToStderr {
    fn new() -> Self {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let saved = nix::unistd::dup(std::io::stdout()).ok();
        if saved.is_some() {
            let _ = nix::unistd::dup2_stdout(std::io::stderr());
        }
        Self { saved }
    }
}

impl Drop for StdoutToStderr {
    fn drop(&mut self) {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        if let Some(fd) = self.saved.take() {
            let _ = nix::unistd::dup2_stdout(fd);
        }
    }
}

/// goose logs through the `log` crate and, unless a logger is already
/// installed, installs one that prints to stdout (where our report and
/// `--json` go). Ours, installed first, keeps every `log` record on stderr:
/// errors always, warnings at most [`MAX_WARNINGS`] times (a failing target
/// would otherwise print one per request; the report counts them).
fn route_goose_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if log::set_logger(&GOOSE_LOG).is_ok() {
            log::set_max_level(log::LevelFilter::Warn);
        }
    });
}

const MAX_WARNINGS: u64 = 3;
static GOOSE_LOG: StderrLog = StderrLog(std::sync::atomic::AtomicU64::new(0));

struct StderrLog(std::sync::atomic::AtomicU64);

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if r.level() == log::Level::Warn {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if n > MAX_WARNINGS {
                return;
            }
            if n == MAX_WARNINGS {
                eprintln!("further warnings suppressed (the report counts every error)");
                return;
            }
        }
        eprintln!(
            "{} {}: {}",
            r.target(),
            r.level().as_str().to_lowercase(),
            r.args()
        );
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenarios(weights: &[u32]) -> Vec<ScenarioPlan> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| ScenarioPlan {
                name: format!("s{i}"),
                weight,
                txs: vec![],
            })
            .collect()
    }

    #[test]
    fn users_get_scenarios_by_weight_interleaved_as_goose_allots_them() {
        assert_eq!(round_robin(&scenarios(&[2, 1, 1])), [0, 1, 2, 0]);
        assert_eq!(round_robin(&scenarios(&[1, 3])), [0, 1, 1, 1]);
        assert_eq!(round_robin(&scenarios(&[])), [0]);
    }

    #[test]
    fn status_labels_are_shared_and_replays_say_so() {
        assert_eq!(status_label(200, false), "200");
        assert!(matches!(status_label(200, false), Cow::Borrowed(_)));
        assert_eq!(status_label(201, true), "201 replayed");
        assert_eq!(status_label(999, false), "999");
    }

    #[test]
    fn correction_backfills_requests_slower_than_the_cadence() {
        let mut t = vec![TxTally::default()];
        for _ in 0..99 {
            t[0].raw.record(1_000).unwrap();
        }
        t[0].raw.record(100_000).unwrap();
        let cadence = correct(&mut t, Duration::ZERO);
        assert_eq!(cadence, 1_000);
        // The 100 ms request stands for 99 more the user would have sent.
        assert_eq!(t[0].corrected.len(), 100 + 99);
        assert!(t[0].corrected.value_at_quantile(0.99) > 10_000);
        assert!(t[0].raw.value_at_quantile(0.99) <= 1_001);
    }

    #[test]
    fn think_time_lengthens_the_cadence_so_less_is_backfilled() {
        let mut t = vec![TxTally::default()];
        for _ in 0..99 {
            t[0].raw.record(1_000).unwrap();
        }
        t[0].raw.record(100_000).unwrap();
        correct(&mut t, Duration::from_millis(49));
        assert_eq!(t[0].corrected.len(), 100 + 1);
    }
}
