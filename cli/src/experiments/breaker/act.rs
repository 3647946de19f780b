//! Act: five phases against one catalog replica while a background reader
//! reads through the BFF, each phase noting its evidence as it goes.
//!
//! 0. client errors pinned to the target (they must not count);
//! 1. every call to it fails (chaos at the BFF), read by read until open;
//! 2. open: pinned requests must be refused at once, nothing reach it;
//! 3. dead (SIGKILL): only half-open probes may try it;
//! 4. back: the breaker must half-open and close.
//!
//! Whatever happens, the fleet is restored before returning: chaos off and
//! the replica running.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::Params;
use super::evidence::{Evidence, served_by};
use super::plan::{CLIENT_ERRORS, PINNED, Plan, READS, client_error_paths};
use crate::clients::bff_admin::{BffAdmin, BreakerState, ChaosRequest, FaultSpec};
use crate::fleet::control::{self, How};
use crate::fleet::{Ctx, FleetState};
use crate::run::Lab;
use crate::run::record::outcome_of;
use crate::run::{Latencies, Outcomes};

/// Runs the phases, restores the fleet, and returns what they observed.
pub async fn act(ctx: &Ctx, lab: &Lab, p: &Params, plan: &Plan) -> Result<Evidence> {
    let mut ev = Evidence {
        dead_for: plan.dead_for,
        ..Evidence::default()
    };
    let reader = Reader::start(
        lab.http.clone(),
        plan.read_url.clone(),
        plan.session.clone(),
        p.read_rate,
    );
    let mut sequential = (Outcomes::default(), Latencies::default());
    let acted = phases(ctx, lab, p, plan, &reader, &mut ev, &mut sequential).await;
    // Restore the fleet whatever happened: chaos off, the replica running.
    let _ = plan.admin.lift_chaos().await;
    let restored = restore(ctx, &p.target).await;
    let (mut reads, mut read_lat) = reader.finish().await?;
    acted?;
    restored?;
    reads.merge(&sequential.0);
    read_lat.merge(&sequential.1);
    ev.reads = reads;
    ev.read_lat = read_lat;
    Ok(ev)
}

/// Phases 0–4; phase 1's own reads go to `sequential`.
async fn phases(
    ctx: &Ctx,
    lab: &Lab,
    p: &Params,
    plan: &Plan,
    reader: &Reader,
    ev: &mut Evidence,
    sequential: &mut (Outcomes, Latencies),
) -> Result<()> {
    let gw = &plan.admin;
    let s = plan.settings;
    client_errors(lab, gw, p, plan, ev).await?;
    if !open_by_failures(lab, gw, p, plan, ev, sequential).await? {
        return Ok(());
    }

    // Phase 2: open. Requests pinned to the target must be refused at once;
    // the replica (alive) must see nothing, and nothing may get past the
    // breaker (not even to the chaos layer behind it).
    reader.phase("2 open");
    let phase_start = Instant::now();
    let served0 = served_by(&lab.http, &plan.target_url).await.ok();
    let view0 = gw.upstream(&p.target).await?;
    let open_left = Duration::from_millis(view0.retry_after_ms);
    for _ in 0..p.pinned {
        let t = Instant::now();
        let request = lab
            .http
            .get(&plan.read_url)
            .header("x-session-id", &plan.session);
        let r = gw.pinned(request, &p.target).send().await;
        ev.pinned_lat.record(PINNED, t.elapsed());
        if let Ok(r) = &r {
            ev.pinned_bad_retry_after += u64::from(!retry_after_ok(r.headers()));
        }
        ev.pinned.add(PINNED, outcome_of(&r.map(|r| r.status())));
    }
    tokio::time::sleep(Duration::from_millis(200).min(s.open / 4)).await;
    let open1 = gw.upstream(&p.target).await?.counters;
    ev.open_phase = open1.since(view0.counters);
    ev.open_outlasted = phase_start.elapsed() >= open_left;
    ev.replica_served_delta = match (served0, served_by(&lab.http, &plan.target_url).await.ok()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };

    // Phase 3: dead. Chaos off, so calls would reach the (dead) port: only
    // half-open probes may.
    reader.phase("3 dead");
    let dead0 = gw.upstream(&p.target).await?.counters;
    tokio::task::block_in_place(|| control::stop(ctx, &p.target, How::Crash))?;
    gw.lift_chaos().await?;
    tokio::time::sleep(ev.dead_for).await;
    let dead1 = gw.upstream(&p.target).await?.counters;
    ev.dead_phase = dead1.since(dead0);

    // Phase 4: back. The breaker must half-open and close within its open
    // time (plus slack) of the replica being ready again.
    reader.phase("4 recovered");
    ev.restarted_in = Some(control::start(ctx, &p.target).await?);
    let ready = Instant::now();
    let bound = s.open + Duration::from_millis(p.close_slack_ms);
    let closed = poll(bound + Duration::from_secs(2), || async {
        let v = gw.upstream(&p.target).await?;
        Ok((v.state == BreakerState::Closed).then(Instant::now))
    })
    .await?;
    ev.closed_after = closed.map(|c| c - ready);
    ev.recovery = gw.upstream(&p.target).await?.counters.since(dead1);
    // Reads keep flowing; the replica's own counter shows it serves again.
    ev.served_after_recovery = poll(Duration::from_secs(3), || async {
        Ok(served_by(&lab.http, &plan.target_url)
            .await
            .ok()
            .filter(|n| *n > 0.0))
    })
    .await?;
    Ok(())
}

/// Phase 0: the client's faults, pinned to the target, more of them than
/// it takes to open the breaker. Only upstream faults may count: a
/// breaker that counted these could be opened by anyone, for everyone.
async fn client_errors(
    lab: &Lab,
    gw: &BffAdmin,
    p: &Params,
    plan: &Plan,
    ev: &mut Evidence,
) -> Result<()> {
    let before = gw.upstream(&p.target).await?.counters;
    for _ in 0..=plan.settings.consecutive_failures {
        for path in client_error_paths(plan.product) {
            let request = lab
                .http
                .get(format!("{}{path}", gw.url))
                .header("x-session-id", &plan.session);
            let r = gw
                .pinned(request, &p.target)
                .send()
                .await
                .map(|r| r.status());
            ev.client_errors.add(CLIENT_ERRORS, outcome_of(&r));
        }
    }
    let after = gw.upstream(&p.target).await?;
    ev.client_phase = after.counters.since(before);
    ev.closed_after_client_errors = after.state == BreakerState::Closed;
    Ok(())
}

/// Phase 1: every call to the target fails (injected at the BFF, where the
/// replica's answer would arrive). Reads one at a time, nothing else in
/// flight, and watches the breaker after each read, so the failure count
/// at opening is exact. Whether it opened.
async fn open_by_failures(
    lab: &Lab,
    gw: &BffAdmin,
    p: &Params,
    plan: &Plan,
    ev: &mut Evidence,
    (seq, seq_lat): &mut (Outcomes, Latencies),
) -> Result<bool> {
    let before = gw.upstream(&p.target).await?.counters;
    let mut fault = FaultSpec::on(&p.target, 300);
    fault.error_rate = 1.0;
    fault.error_status = 503;
    gw.put_chaos(&ChaosRequest {
        seed: Some(plan.seed),
        faults: vec![fault],
    })
    .await?;
    let label = format!("{READS}: phase 1 errors injected");
    for n in 1..=plan.settings.read_limit() {
        let t = Instant::now();
        let r = lab
            .http
            .get(&plan.read_url)
            .header("x-session-id", &plan.session)
            .send()
            .await
            .map(|r| r.status());
        seq_lat.record(&label, t.elapsed());
        let o = outcome_of(&r);
        seq.add(READS, o.clone());
        seq.add(&label, o);
        let view = gw.upstream(&p.target).await?;
        if view.state == BreakerState::Open {
            ev.reads_to_open = n;
            ev.failures_at_open = Some(view.counters.since(before).failures);
            return Ok(true);
        }
    }
    Ok(false)
}

/// A fail-fast refusal's `Retry-After` is a whole number of seconds, ≥ 1.
fn retry_after_ok(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|v| v >= 1)
}

/// Starts the replica again if it is not running.
async fn restore(ctx: &Ctx, target: &str) -> Result<()> {
    let state = FleetState::load(&ctx.state_dir)?.context("fleet.json vanished")?;
    let running = state
        .components
        .iter()
        .any(|c| c.name == target && c.pid.is_some());
    if !running {
        control::start(ctx, target)
            .await
            .with_context(|| format!("restore: cannot start {target} again"))?;
    }
    Ok(())
}

/// Polls `check` every 20 ms until it returns `Some` or `within` passes.
async fn poll<T, F, Fut>(within: Duration, mut check: F) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await? {
            return Ok(Some(v));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Background reads through the BFF, labelled by the phase they fell in;
/// idle (no reads) until the first phase is named.
struct Reader {
    stop: Arc<AtomicBool>,
    phase: Arc<Mutex<Option<&'static str>>>,
    task: tokio::task::JoinHandle<(Outcomes, Latencies)>,
}

impl Reader {
    fn start(http: reqwest::Client, url: String, session: String, rate: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let phase = Arc::new(Mutex::new(None));
        let (s, p) = (stop.clone(), phase.clone());
        let task = tokio::spawn(async move {
            let (mut out, mut lat) = (Outcomes::default(), Latencies::default());
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                let Some(label) = *p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
                else {
                    continue;
                };
                let label = format!("{READS}: phase {label}");
                let t = Instant::now();
                let r = http
                    .get(&url)
                    .header("x-session-id", &session)
                    .send()
                    .await
                    .map(|r| r.status());
                lat.record(&label, t.elapsed());
                let o = outcome_of(&r);
                out.add(READS, o.clone());
                out.add(&label, o);
            }
            (out, lat)
        });
        Self { stop, phase, task }
    }

    fn phase(&self, label: &'static str) {
        *self
            .phase
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(label);
    }

    async fn finish(self) -> Result<(Outcomes, Latencies)> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn retry_after_must_be_whole_seconds_of_at_least_one() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("retry-after", HeaderValue::from_str(v).unwrap());
            retry_after_ok(&h)
        };
        assert!(with("1"));
        assert!(with("3"));
        assert!(!with("0"));
        assert!(!with("0.5"));
        assert!(!with("soon"));
        assert!(!retry_after_ok(&HeaderMap::new()));
    }
}
