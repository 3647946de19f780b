//! The executor: runs a plan against the fleet while the load runs, through
//! the control plane as a library (`fleet::control`: the same stop, start
//! and pause as `storefront stop|start|pause NAME`), Vault's API for a lease
//! and the BFF's admin API for chaos. Every planned fault ends as one
//! [`FaultOutcome`]: injected (and healed) or failed, with why. Nothing is
//! silent: a fault the load ended before is reported as not injected.
//!
//! Faults on one component take turns (a lock per component), so a kill and
//! a pause of the same instance never interleave. A fault's heal (restart,
//! resume, chaos cleared) always runs, even when the load stops early.
//!
//! Supervision: a kill goes through `control::stop`, which records the
//! instance as stopped on purpose, so a fleet's supervisor leaves it alone
//! and the schedule restarts it after `for`: the two never race for the
//! port. Should something else have started it meanwhile, the restart says
//! so instead of failing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::outcome::{FaultOutcome, SETTLE};
use super::plan::Planned;
use super::schedule::{Kind, PgMode};
use crate::clients::bff_admin::BffAdmin as Gateway;
use crate::clients::bff_admin::{ChaosRequest, FaultSpec};
use crate::clients::call::HttpError;
use crate::clients::contract::identity::Lease;
use crate::clients::identity::Identity;
use crate::clients::vault::Vault;
use crate::fleet::control::{self, How};
use crate::fleet::process::{self, Stopped};
use crate::fleet::{Ctx, FleetState, services};
use crate::run::accounts;

/// How long a service whose lease was revoked may take to serve again on
/// a new one before the fault counts as failed.
const LEASE_RECOVERY: Duration = Duration::from_secs(15);

/// What the faults act on.
#[derive(Clone)]
pub struct Env {
    pub ctx: Ctx,
    pub http: reqwest::Client,
    /// Seeds the BFF's chaos draws.
    pub seed: u64,
}

/// A running schedule.
pub struct Executor {
    cancel: watch::Sender<bool>,
    tasks: Vec<JoinHandle<FaultOutcome>>,
}

impl Executor {
    /// Starts every planned fault's task; times count from `origin` (when
    /// the load began).
    pub fn start(env: Env, plan: Vec<Planned>, origin: Instant) -> Self {
        let (cancel, rx) = watch::channel(false);
        let mut locks: HashMap<String, Arc<Mutex<()>>> = HashMap::new();
        let tasks = plan
            .into_iter()
            .map(|p| {
                let key = if p.kind == Kind::Chaos {
                    "bff chaos".to_owned()
                } else {
                    p.component.clone()
                };
                let lock = locks.entry(key).or_default().clone();
                tokio::spawn(one(env.clone(), p, origin, lock, rx.clone()))
            })
            .collect();
        Self { cancel, tasks }
    }

    /// Tells faults not yet started that the load is over, waits for those
    /// under way to heal, and returns every outcome in plan order.
    pub async fn finish(self) -> Vec<FaultOutcome> {
        let _ = self.cancel.send(true);
        let mut out = Vec::with_capacity(self.tasks.len());
        for t in self.tasks {
            match t.await {
                Ok(o) => out.push(o),
                Err(e) => out.push(FaultOutcome::lost(format!("the fault's task ended: {e}"))),
            }
        }
        out
    }
}

async fn one(
    env: Env,
    p: Planned,
    origin: Instant,
    lock: Arc<Mutex<()>>,
    mut cancel: watch::Receiver<bool>,
) -> FaultOutcome {
    let due = tokio::time::Instant::from_std(origin + p.at);
    tokio::select! {
        _ = tokio::time::sleep_until(due) => {}
        _ = cancel.wait_for(|c| *c) => {
            return FaultOutcome::not_started(&p, "not injected: the load ended before its time");
        }
    }
    let _turn = lock.lock().await;
    let since = |i: Instant| i.saturating_duration_since(origin).as_secs_f64();
    let start = Instant::now();
    let mut o = FaultOutcome::started(&p, since(start));
    let r = inject(&env, &p).await;
    o.end_s = Some(since(Instant::now()));
    match r {
        Ok(detail) => o.injected(detail),
        Err(e) => o.failed(format!("{e:#}")),
    }
    o
}

async fn inject(env: &Env, p: &Planned) -> Result<String> {
    let name = p.component.clone();
    match p.kind {
        Kind::Kill => {
            let stopped = stop(env, &name, How::Crash).await?;
            if stopped == Stopped::NotRunning {
                bail!("`{name}` was not running: nothing to kill");
            }
            tokio::time::sleep(p.window.unwrap_or_default()).await;
            let again = start_again(env, &name)
                .await
                .context("killed, but the restart failed")?;
            Ok(format!("SIGKILL; {again}"))
        }
        Kind::Pause => {
            pause(env, &name, false).await?;
            tokio::time::sleep(p.window.unwrap_or_default()).await;
            pause(env, &name, true)
                .await
                .context("paused, but SIGCONT failed")?;
            Ok(format!(
                "SIGSTOP for {:.1}s, then SIGCONT",
                p.window.unwrap_or_default().as_secs_f64()
            ))
        }
        Kind::Restart => {
            let how = match p.mode {
                Some(PgMode::Immediate) => How::Immediate,
                _ => How::Graceful,
            };
            let after = match stop(env, &name, how).await? {
                Stopped::NotRunning => bail!("`{name}` was not running: nothing to restart"),
                Stopped::Graceful => "it exited",
                Stopped::Killed => "it needed SIGKILL after the deadline",
            };
            let again = start_again(env, &name)
                .await
                .context("stopped, but the start failed")?;
            let signal = control::signal(&name, how).map_or("?".into(), |s| s.to_string());
            Ok(format!("stopped with {signal} ({after}); {again}"))
        }
        Kind::RevokeLease => revoke_lease(env, &name).await,
        Kind::Chaos => chaos(env, p).await,
    }
}

/// After the last fault has healed: waits until every component of the
/// fleet answers its readiness probe again (a fault may leave a service
/// up but not ready: a dropped Redis connection, a lease it has not
/// replaced). `Ok(how long)`, or `Err` naming what is not ready after
/// [`SETTLE`]. The checks run after this either way.
pub async fn settle(ctx: &Ctx) -> Result<Duration, String> {
    let t = Instant::now();
    loop {
        let state = match FleetState::load(&ctx.state_dir) {
            Ok(Some(s)) => s,
            Ok(None) => return Err("fleet.json is gone".into()),
            Err(e) => return Err(format!("{e:#}")),
        };
        let bad: Vec<String> = crate::fleet::observe::observe(&state)
            .await
            .into_iter()
            .filter(|c| c.state != "ready")
            .map(|c| format!("{} ({})", c.name, c.state))
            .collect();
        if bad.is_empty() {
            return Ok(t.elapsed());
        }
        if t.elapsed() >= SETTLE {
            return Err(format!(
                "not ready {}s after the last fault: {}",
                SETTLE.as_secs(),
                bad.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `control::stop` off the async threads (it polls with short sleeps).
async fn stop(env: &Env, name: &str, how: How) -> Result<Stopped> {
    let (ctx, name) = (env.ctx.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || control::stop(&ctx, &name, how)).await?
}

async fn pause(env: &Env, name: &str, resume: bool) -> Result<()> {
    let (ctx, name) = (env.ctx.clone(), name.to_owned());
    tokio::task::spawn_blocking(move || control::pause(&ctx, &name, resume).map(drop)).await?
}

/// Starts it and waits until it is ready, unless something else already
/// has (see the module doc on supervision).
async fn start_again(env: &Env, name: &str) -> Result<String> {
    if let Some(pid) = running(&env.ctx, name)? {
        return Ok(format!(
            "already running again (pid {pid}): started by something else, not the schedule"
        ));
    }
    let s = control::start_detailed(&env.ctx, name).await?;
    let also = if s.also.is_empty() {
        String::new()
    } else {
        format!("; also (re)started: {}", s.also.join(", "))
    };
    Ok(format!(
        "started again (pid {}), ready in {:.2}s{also}",
        s.pid,
        s.took_ms as f64 / 1000.0
    ))
}

fn running(ctx: &Ctx, name: &str) -> Result<Option<i32>> {
    let state = FleetState::load(&ctx.state_dir)?.context("fleet.json is gone")?;
    Ok(state
        .components
        .iter()
        .find(|c| c.name == name)
        .and_then(|c| c.pid.filter(|p| process::alive(*p, c.start_ticks))))
}

/// Revokes the instance's current lease in Vault (read fresh from
/// fleet.json: a restarted Vault has a new root token). Postgres then ends
/// the sessions on that login; the service must notice by itself and take
/// a new lease. For identity the fault is over when a password grant
/// (which reads the users table) succeeds on a newer generation; a service
/// that has not recovered within [`LEASE_RECOVERY`] fails the fault.
async fn revoke_lease(env: &Env, name: &str) -> Result<String> {
    let state = FleetState::load(&env.ctx.state_dir)?.context("fleet.json is gone")?;
    let base = state
        .components
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.url.clone())
        .with_context(|| format!("no component `{name}`"))?;
    let admin = services::lab_admin_token(&env.ctx.profile)
        .context("the fleet profile sets no BFF_ADMIN_TOKEN: the lab endpoints refuse every call")?
        .to_owned();
    let identity = Identity::new(env.http.clone(), base).with_lab_token(admin);
    let before = lease(&identity).await?;
    let lease_id = before
        .lease_id
        .clone()
        .with_context(|| format!("`{name}` reports no Vault lease: {before:?}"))?;
    let generation = before.generation;
    let e = &state.endpoints;
    Vault::new(env.http.clone(), &e.vault_addr, &e.vault_token)
        .revoke_lease(&lease_id)
        .await
        .context("Vault refused the revoke")?;
    let revoked = format!("revoked generation {generation} ({})", before.username);
    let t = Instant::now();
    let mut last = String::from("nothing tried yet");
    while t.elapsed() < LEASE_RECOVERY {
        let used = if name.starts_with("identity") {
            match grant(&identity).await {
                Ok(()) => true,
                Err(e) => {
                    last = e;
                    false
                }
            }
        } else {
            true
        };
        if used {
            match lease(&identity).await {
                Ok(now) if now.generation > generation => {
                    return Ok(format!(
                        "{revoked}; {} on generation {} {:.2}s later",
                        if name.starts_with("identity") {
                            "a password grant succeeded"
                        } else {
                            "serving"
                        },
                        now.generation,
                        t.elapsed().as_secs_f64()
                    ));
                }
                Ok(now) => last = format!("still on generation {}", now.generation),
                Err(e) => last = format!("{e:#}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bail!(
        "{revoked}, but `{name}` had not recovered within {}s (last: {last})",
        LEASE_RECOVERY.as_secs()
    )
}

/// `GET /lab/lease` of one instance.
async fn lease(identity: &Identity) -> Result<Lease> {
    identity
        .lease()
        .await
        .map_err(|e| match e.downcast_ref::<HttpError>().map(|h| h.status) {
            Some(reqwest::StatusCode::NOT_FOUND) => e.context(format!(
                "{}/lab/lease: 404 (no lab endpoints, or no dynamic credentials)",
                identity.base
            )),
            _ => e,
        })
}

/// One password grant as the first seeded customer, straight to identity.
async fn grant(identity: &Identity) -> Result<(), String> {
    let name = accounts::CUSTOMERS[0];
    identity
        .login(name, &accounts::password(name))
        .await
        .map(drop)
        .map_err(|e| format!("as {name}: {e:#}"))
}

/// Sets the BFF's chaos for the window, then clears it. Its own TTL is a
/// few seconds past the window, so a crash of this process cannot leave it.
async fn chaos(env: &Env, p: &Planned) -> Result<String> {
    let c = p.chaos.clone().unwrap_or_default();
    let window = p.window.unwrap_or_default();
    let gw = Gateway::connect(&env.ctx)?;
    let fault = FaultSpec {
        latency_ms: c.latency_ms,
        jitter_ms: c.jitter_ms,
        error_rate: c.error_rate,
        error_status: c.error_status,
        abort_rate: c.abort_rate,
        ..FaultSpec::on(&p.component, window.as_secs() + 5)
    };
    gw.put_chaos(&ChaosRequest {
        seed: Some(env.seed),
        faults: vec![fault],
    })
    .await
    .context("the BFF refused the chaos")?;
    tokio::time::sleep(window).await;
    gw.lift_chaos()
        .await
        .context("chaos set, but clearing it failed (it lifts by its TTL)")?;
    Ok(format!(
        "BFF chaos on {} for {:.1}s (errors {} → {}, aborts {}, +{} ms), then cleared",
        p.component,
        window.as_secs_f64(),
        c.error_rate,
        c.error_status,
        c.abort_rate,
        c.latency_ms
    ))
}
