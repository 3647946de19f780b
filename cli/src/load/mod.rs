//! Load generation: a load profile (`profile`) compiled into a plan
//! (`plan`), run either closed-model by goose (`closed`) or open-model at a
//! constant arrival rate (`arrivals`, on the `open` driver, which `flood`
//! shares). Every request's latency goes into our own HDR histograms
//! (`recorder`); afterwards the thresholds are judged, the profile's
//! invariants checked in Postgres (`checks`), and the histograms can be
//! written as HdrHistogram interval logs (`hdrlog`) for merging.
//!
//! A profile's `[[faults]]` (`crate::faults`) are planned before the load
//! and injected while it runs; every one has healed before the checks. The
//! report comes first and the clean-up after it ([`clean_up`]): a clean-up
//! that fails is its own line, never the loss of the report.
//!
//! `--history FILE` hands the recorder `history`'s writer: every client
//! operation becomes a JSON line, written before anything is judged.

pub mod arrivals;
pub mod checks;
pub mod closed;
pub mod hdrlog;
pub mod history;
pub mod live;
pub mod login;
pub mod open;
pub mod pace;
pub mod plan;
pub mod profile;
pub mod recorder;
pub mod summary;
pub mod target;
pub mod template;
pub mod wire;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, ensure};
use serde::Deserialize;

use crate::faults::{self, exec::Executor, plan::Planned};
use crate::fleet::Ctx;
use crate::run::{Invariant, Lab};
use plan::{Plan, Shared};
use profile::{Check, LoadProfile};
use recorder::Recorder;
use summary::{LoadReport, RunLog, TxReport};
use target::Targets;
use template::{IN_STOCK_MIN, Source, Sources, VarSpec, VarWorld};

/// How to run a profile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub seed: u64,
    /// Open model: scenario passes started per second.
    pub rate: Option<f64>,
    /// Open model: requests in flight at most (beyond: dropped and counted).
    pub max_in_flight: usize,
    /// Open model: keep-alive connections at most (`None`:
    /// [`target::OPEN_CONNECTIONS`]).
    pub connections: Option<usize>,
    /// goose's HTML report (closed model).
    pub html: Option<PathBuf>,
    pub hdr_out: Option<PathBuf>,
    /// No live progress line.
    pub quiet: bool,
    pub via: target::Via,
    /// `--history FILE`: every client operation as a JSON line (`history`).
    pub history: Option<PathBuf>,
    /// The fleet's context: the control plane a fault schedule acts through.
    pub fleet: Option<Ctx>,
}

pub async fn run(lab: &Lab, profile: LoadProfile, opts: &Options) -> Result<LoadReport> {
    let t = Instant::now();
    let started = SystemTime::now();
    let plan = Plan::new(profile);
    let p = &plan.profile;
    let mut services = p.services();
    if needs_catalog(p) {
        services.insert("catalog".into());
    }
    let targets = Targets::resolve(lab, &services, opts.via)?;
    let sources = fetch_sources(lab, &targets, &p.vars).await?;
    let world = VarWorld {
        specs: p.vars.clone(),
        sources,
        run_tag: format!("{:08x}", rand::random::<u32>()),
    };
    let logins = login::Logins::new(&targets, lab.http.clone());
    if let Some(l) = &logins {
        l.warm(p.scenarios.iter().map(|s| s.login)).await?;
    }
    let fault_plan = plan_faults(lab, p, opts)?;
    let checks = p.invariants.clone();
    let before = checks::before(lab, &checks).await?;
    let (model, total) = match opts.rate {
        None => (
            format!(
                "closed: {} users, ramp {}/s, {}s, think {}",
                p.users,
                p.ramp(),
                p.duration.0.as_secs(),
                p.think_time
            ),
            p.duration.0 + Duration::from_secs_f64(f64::from(p.users) / p.ramp()),
        ),
        Some(rate) => (
            format!(
                "open: {rate} scenario passes/s for {}s, think {}",
                p.duration.0.as_secs(),
                p.think_time
            ),
            p.duration.0,
        ),
    };
    let shards = match opts.rate {
        None => (p.users as usize).min(32),
        Some(_) => 32,
    };
    let history = opts
        .history
        .as_deref()
        .map(history::Writer::create)
        .transpose()?;
    // Fault times count from here, as the recorder's seconds do.
    let origin = Instant::now();
    let shared = Arc::new(Shared {
        recorder: Recorder::new(plan.txs.len(), shards)
            .with_history(history.as_ref().map(history::Writer::history)),
        plan,
        targets,
        world,
        seed: opts.seed,
        logins,
    });

    let live = live::Live::start(shared.clone(), total, opts.quiet);
    let executor = fault_plan.map(|(plan, ctx)| {
        let env = faults::exec::Env {
            ctx,
            http: lab.http.clone(),
            seed: opts.seed,
        };
        Executor::start(env, plan, origin)
    });
    let mut builtin = Vec::new();
    let mut measurements = Vec::new();
    let driven = drive(&shared, opts, &mut builtin, &mut measurements).await;
    // Every fault heals, and the fleet is ready again, before anything is
    // judged, even when the load failed.
    let fault_outcomes = match executor {
        Some(e) => {
            let outcomes = e.finish().await;
            let settled = match &opts.fleet {
                Some(ctx) => faults::exec::settle(ctx).await,
                None => Err("no fleet context".into()),
            };
            Some((outcomes, settled))
        }
        None => None,
    };
    drop(live);
    if let Some(w) = history {
        // Written before anything is judged; a history that could not be
        // written is said so, and loses no result.
        let shown = match w.finish().await {
            Ok(written) => written.describe(),
            Err(e) => format!("FAILED: {e:#}"),
        };
        measurements.push(("history (every operation, JSON lines)".into(), shown));
    }
    let (goose, corrected_means) = driven?;
    if let Some((o, settled)) = &fault_outcomes {
        builtin.push(faults::outcome::invariant(o));
        builtin.push(faults::outcome::settled(settled));
    }

    let mut tallies = shared.recorder.finish();
    let corrected_means = if goose.is_some() {
        let cadence = closed::correct(&mut tallies, shared.plan.profile.think_time.mean());
        format!(
            "raw latency with coordinated omission corrected: every request slower than a user's usual cadence ({:.3} ms: the median latency plus the mean think time) also stands for the requests that user did not send meanwhile",
            cadence as f64 / 1000.0
        )
    } else {
        corrected_means
    };
    let window = shared.recorder.window().as_secs_f64();
    let mut txs: Vec<TxReport> = shared
        .plan
        .txs
        .iter()
        .zip(tallies.iter().cloned())
        .map(|(tx, t)| TxReport::new(tx.label.clone(), t, window))
        .collect();
    // Empty when our own users ran the closed model (no goose to cross-check).
    if let Some(views) = goose.filter(|v| !v.is_empty()) {
        for (tx, v) in txs.iter_mut().zip(views) {
            tx.goose = v;
        }
        builtin.push(summary::cross_check(&txs));
    }
    if let Some(l) = &shared.logins {
        let (invariant, measurement) = login_report(&l.tally());
        builtin.push(invariant);
        measurements.push(measurement);
    }
    let thresholds = summary::judge(&shared.plan.profile.thresholds, &txs);
    let mut invariants = builtin;
    invariants.extend(
        checks::after(
            lab,
            &checks,
            &before,
            &shared.world.run_tag,
            &shared.plan,
            &tallies,
        )
        .await,
    );
    let mut run = RunLog::new(&txs, fault_outcomes.map(|(o, _)| o).unwrap_or_default());
    if checks.contains(&Check::CatalogStockConservation) {
        run.release_tag = Some(shared.world.run_tag.clone());
    }
    let mut report = LoadReport {
        profile: shared.plan.profile.name.clone(),
        description: shared.plan.profile.description.clone(),
        model,
        target: shared.targets.describe(),
        seed: Some(opts.seed),
        run_tag: shared.world.run_tag.clone(),
        verdict: crate::run::Verdict::Unknown,
        window_s: window,
        corrected_means,
        transactions: txs,
        thresholds,
        invariants,
        measurements,
        took_ms: t.elapsed().as_millis() as u64,
        run,
    };
    report.conclude();
    if let Some(dir) = &opts.hdr_out {
        let path = hdrlog::write(dir, &report, started)?;
        report
            .measurements
            .push(("HDR interval log".into(), path.display().to_string()));
    }
    if let Some(h) = &opts.html {
        report
            .measurements
            .push(("goose HTML report".into(), h.display().to_string()));
    }
    Ok(report)
}

/// After the report is out: releases what the run's reservations still
/// hold (issue 12, defect d: a 504 or a pool timeout here used to throw the
/// whole report away). Its result is the report's `cleanup`, its own line.
pub async fn clean_up(lab: &Lab, report: &mut LoadReport) {
    let Some(tag) = report.run.release_tag.take() else {
        return;
    };
    report.cleaned_up(checks::release_held(lab, &tag).await);
}

/// The profile's fault schedule planned on this fleet, with the context
/// its executor acts through; `None` without faults.
fn plan_faults(lab: &Lab, p: &LoadProfile, opts: &Options) -> Result<Option<(Vec<Planned>, Ctx)>> {
    if p.faults.is_empty() {
        return Ok(None);
    }
    let ctx = opts.fleet.clone().context(
        "this run has a fault schedule but no fleet context to inject it through (a bug in the caller)",
    )?;
    let components: Vec<String> = lab
        .state
        .components
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let plan =
        faults::plan::plan(&p.faults, p.duration.0, opts.seed, &components).map_err(|e| {
            crate::exit::Exit::error(
                crate::exit::ERROR,
                format!("fault schedule of `{}`: {e}", p.name),
            )
        })?;
    Ok(Some((plan, ctx)))
}

/// Runs the load itself, closed or open model; what it measured besides
/// the recorder goes into `builtin` and `measurements`.
async fn drive(
    shared: &Arc<Shared>,
    opts: &Options,
    builtin: &mut Vec<Invariant>,
    measurements: &mut Vec<(String, String)>,
) -> Result<(Option<Vec<Option<closed::GooseView>>>, String)> {
    Ok(match opts.rate {
        None => {
            let r = closed::run(shared.clone(), opts.html.as_deref()).await?;
            measurements.push((
                "closed-model run".into(),
                format!("{:.2}s (ramp included)", r.took.as_secs_f64()),
            ));
            (Some(r.goose), String::new())
        }
        Some(rate) => {
            let model = open::OpenModel {
                rate,
                duration: shared.plan.profile.duration.0,
                max_in_flight: opts.max_in_flight,
            };
            let connections = opts.connections.unwrap_or(target::OPEN_CONNECTIONS);
            let r = arrivals::run(shared.clone(), model, connections).await;
            builtin.push(Invariant::equal(
                "every arrival was sent (none dropped for overload)",
                0,
                r.dropped,
                format!(
                    "{} of {} arrivals sent; at most {} in flight",
                    r.sent,
                    model.arrivals(),
                    opts.max_in_flight
                ),
            ));
            measurements.push((
                "arrivals sent".into(),
                format!("{} of {}", r.sent, model.arrivals()),
            ));
            measurements.push(("connections at most".into(), connections.to_string()));
            measurements.push((
                "latest send (generator lag)".into(),
                format!("{:.3} ms", r.max_send_lag.as_secs_f64() * 1000.0),
            ));
            (None, "latency from each request's intended send time (open model); raw = from the actual send".to_owned())
        }
    })
}

/// The logins through the BFF, as an invariant (none may fail: a user
/// whose login failed sent nothing meanwhile) and a measurement.
fn login_report(t: &login::LoginTally) -> (Invariant, (String, String)) {
    let shown = format!(
        "{} ok, {} failed{}",
        t.ok,
        t.failed,
        t.last_error
            .as_ref()
            .map(|e| format!(" (last: {e})"))
            .unwrap_or_default()
    );
    (
        Invariant::equal(
            "every login through the BFF succeeded",
            0,
            t.failed,
            format!("password grants via POST /api/identity/token: {shown}"),
        ),
        ("logins (password grant through the BFF)".into(), shown),
    )
}

fn needs_catalog(p: &LoadProfile) -> bool {
    p.invariants.contains(&Check::CatalogStockConservation)
        || p.vars.values().any(|v| matches!(v, VarSpec::From(_)))
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Item>,
    next_after: Option<i64>,
}

#[derive(Deserialize)]
struct Item {
    id: i64,
    stock: i64,
}

/// Fetches the lists the profile's variables draw from, through the same
/// target as the load (so through the BFF when there is one).
async fn fetch_sources(
    lab: &Lab,
    targets: &Targets,
    vars: &std::collections::BTreeMap<String, VarSpec>,
) -> Result<Sources> {
    let needed: BTreeSet<Source> = vars
        .values()
        .filter_map(|v| match v {
            VarSpec::From(s) => Some(*s),
            _ => None,
        })
        .collect();
    let mut out = Sources::default();
    if needed.is_empty() {
        return Ok(out);
    }
    let (mut all, mut in_stock) = (Vec::new(), Vec::new());
    let mut after = 0i64;
    loop {
        let url = targets.url("catalog", &format!("/products?limit=100&after={after}"), 0);
        let page: Page = lab
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .with_context(|| format!("cannot list the products the load draws from: GET {url}"))?
            .json()
            .await
            .with_context(|| format!("GET {url}: not a page of products"))?;
        for p in page.items {
            all.push(p.id.to_string());
            if p.stock >= IN_STOCK_MIN {
                in_stock.push(p.id.to_string());
            }
        }
        match page.next_after {
            Some(n) => after = n,
            None => break,
        }
    }
    for s in needed {
        let list = match s {
            Source::CatalogProducts => all.clone(),
            Source::CatalogProductsInStock => in_stock.clone(),
        };
        ensure!(
            !list.is_empty(),
            "the catalog has no product for {s:?}: is it migrated and seeded?"
        );
        out.0.insert(s, list);
    }
    Ok(out)
}
