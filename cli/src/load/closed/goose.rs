//! goose driving the closed model's users, when `--goose-html` asks for
//! its HTML report: on our tokio runtime, built with
//! `initialize_with_config` (never `initialize()`, which parses our argv),
//! its metrics the cross-check of ours (same request counts). goose's own
//! stdout lines and `log` records are kept off stdout, where our report goes.

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use goose::config::GooseConfiguration;
use goose::prelude::*;

use super::{ClosedRun, error_kind, outcome_label};
use crate::load::history::{self, Op, Outcome};
use crate::load::plan::Shared;
use crate::load::profile::Method;
use crate::load::recorder::Sample;
use crate::load::target::REPLAYED;
use crate::load::template::Bindings;

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

/// goose's users (for its HTML report).
pub(super) async fn run(shared: Arc<Shared>, html: &Path) -> Result<ClosedRun> {
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
    cfg.report_file = vec![html.display().to_string()];
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
