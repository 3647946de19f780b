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
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use anyhow::Result;
use hdrhistogram::Histogram;

use super::history::{self, Op, Outcome};
use super::login::Session;
use super::plan::{ScenarioPlan, Shared};
use super::recorder::{Sample, TxTally};
use super::target::Conns;
use super::template::Bindings;
use crate::run::hdr::histogram;

mod goose;
pub use goose::GooseView;

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
        Some(h) => goose::run(shared, h).await,
    }
}

/// Our own users: one task each, started `1/ramp` s apart; each stops at
/// its next request once the duration after the ramp is over.
///
/// The users are shared out over one thread per core, each running its
/// own single-threaded runtime (as wrk runs an event loop per thread): on
/// the CLI's work-stealing runtime a user's wake-ups hopped between worker
/// threads, and a quarter of the generator's CPU went to switching threads
/// (perf, 64 users on one cached GET).
async fn users(shared: Arc<Shared>) -> ClosedRun {
    let p = &shared.plan.profile;
    let n = p.users as usize;
    let ramp = p.ramp();
    let start = tokio::time::Instant::now();
    let stop = start + Duration::from_secs_f64(n as f64 / ramp) + p.duration.0;
    let order = Arc::new(round_robin(&shared.plan.scenarios));
    let threads = std::thread::available_parallelism()
        .map_or(1, |c| c.get())
        .clamp(1, n.max(1));
    let mut done = Vec::with_capacity(threads);
    for t in 0..threads {
        let (shared, order) = (shared.clone(), order.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let users = move || {
            let mut set = tokio::task::JoinSet::new();
            for u in (t..n).step_by(threads) {
                let at = start + Duration::from_secs_f64(u as f64 / ramp);
                set.spawn(user(shared.clone(), u, order[u % order.len()], at, stop));
            }
            async move { while set.join_next().await.is_some() {} }
        };
        let spawned = std::thread::Builder::new()
            .name(format!("load-users-{t}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(async { users().await }),
                    Err(e) => tracing::error!(error = %e, "no runtime for a load thread"),
                }
                let _ = tx.send(());
            });
        match spawned {
            Ok(_) => done.push(rx),
            Err(e) => tracing::error!(error = %e, "load thread not started"),
        }
    }
    for rx in done {
        let _ = rx.await;
    }
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
