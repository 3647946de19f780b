//! `storefront outbox`: does payments' transactional outbox lose or invent
//! events when payments is killed and RabbitMQ freezes mid-publish? And
//! does a naive dual write (`--control`: publish straight to RabbitMQ
//! inside the transaction, then commit) — which it must, or the checker
//! cannot fail?
//!
//! arrange (the bus tap: RabbitMQ's firehose, [`tap`]; payments' lab
//! switches) → act ([`act`]: wave 1 of authorizations, SIGKILL payments
//! while an event's transaction is held open, restart; wave 2, SIGSTOP
//! RabbitMQ at the same kind of moment, SIGCONT) → settle → evidence
//! ([`evidence`], Postgres; the tap) → the pure [`check`].
//!
//! Both arms run the same faults at the same observed moments. The hold (a
//! lab delay between writing an event and committing, both arms) makes the
//! kill land between the two deterministically: in the outbox arm it rolls
//! back an outbox row nobody published; in the dual write it rolls back a
//! change whose event is already on the bus.

mod act;
mod check;
mod evidence;
mod plan;
mod tap;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use uuid::Uuid;

use super::{Invariant, Lab, Report};
use crate::fleet::Ctx;
use check::{Arm, Evidence};

/// How long the run waits, once the database is settled, for the bus to
/// stay quiet before it judges.
const QUIET: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Operations (payment authorizations), each causing exactly one event; half before each fault.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(2..=2000))]
    pub ops: u32,
    /// How long a transaction that wrote an event waits before it commits (both arms), in ms: the window the kill lands in.
    #[arg(long, default_value_t = 800, value_parser = clap::value_parser!(u64).range(100..=1500))]
    pub hold_ms: u64,
    /// How long RabbitMQ stays frozen, in seconds (over 10, the relay's confirm timeout, it republishes: at-least-once copies).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub pause_secs: u64,
    /// Everything must have settled within this many seconds of the first command.
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u64).range(10..=3600))]
    pub bound_secs: u64,
    /// Control arm: payments publishes each event directly, before its transaction commits (a naive dual write, no outbox). Its checker must FAIL.
    #[arg(long)]
    pub control: bool,
}

/// The lab admin token from the running fleet's profile.
fn lab_token(lab: &Lab) -> Result<Option<String>> {
    let root = crate::fleet::project_root()?;
    let (profile, _) = crate::fleet::profile::FleetProfile::load(&root, &lab.state.profile)?;
    Ok(crate::fleet::services::lab_admin_token(&profile).map(str::to_owned))
}

/// What the faults did, for the report.
#[derive(Default)]
struct Faults {
    /// Transactions held when payments was killed, and the restart's time.
    kill: Option<Result<(u64, Duration), String>>,
    /// Transactions held when RabbitMQ froze.
    pause: Option<Result<u64, String>>,
}

pub async fn run(ctx: &Ctx, lab: &Lab, p: &Params, seed: u64) -> Result<Report> {
    let started = Instant::now();
    let arm = if p.control {
        Arm::DualWrite
    } else {
        Arm::Outbox
    };
    let mut report = Report::new(
        "outbox",
        seed,
        json!({"ops": p.ops, "hold_ms": p.hold_ms, "pause_secs": p.pause_secs,
               "bound_secs": p.bound_secs, "control": p.control}),
    );
    let ops = plan::ops(p.ops as usize, seed);
    let orders: Vec<Uuid> = ops.iter().map(|o| o.order_id).collect();
    let switches = act::Switches {
        http: lab.http.clone(),
        url: lab.urls("payments")?[0].clone(),
        token: lab_token(lab)?,
    };
    let deadline = Instant::now() + Duration::from_secs(p.bound_secs);

    // Arrange: the tap before anything is published, then the switches.
    let tap = tap::Tap::start(ctx, &lab.state).await?;
    let acted = act_and_settle(ctx, lab, p, &ops, &orders, &switches, &tap, deadline).await;
    // Always: switches off, firehose off.
    let off = switches
        .set(false, 0, Instant::now() + Duration::from_secs(10))
        .await;
    let (seen, trace_off) = tap.stop().await;
    let (faults, settled_after) = acted?;
    off.context("could not switch payments' lab switches off")?;
    trace_off.context("could not switch RabbitMQ's firehose off")?;

    // Check.
    let ops_set: std::collections::HashSet<Uuid> = orders.iter().copied().collect();
    let bus: Vec<_> = seen
        .events
        .into_iter()
        .filter(|e| ops_set.contains(&e.order_id))
        .collect();
    let ev = Evidence {
        arm,
        ops: orders.clone(),
        committed: evidence::committed(&lab.pg, &orders).await?,
        outbox: evidence::outbox(&lab.pg, &orders).await?,
        bus,
    };
    let counts = check::count(&ev);
    for inv in check::invariants(&ev) {
        report.push(inv);
    }
    push_faults(&mut report, &faults, p);

    // Report.
    for e in &ev.bus {
        report
            .outcomes
            .add("events on the bus (every copy)", e.kind.clone());
    }
    for c in &ev.committed {
        report.outcomes.add("changes committed", c.kind.clone());
    }
    report.measure(
        "arm",
        match arm {
            Arm::Outbox => "transactional outbox",
            Arm::DualWrite => "control: naive dual write (publish, then commit)",
        },
    );
    report.measure("lost events", counts.lost);
    report.measure("phantom events", counts.phantom);
    report.measure("redelivered copies (same id)", counts.redelivered);
    report.measure("unreadable publishes to checkout.events", seen.unreadable);
    if let Some(Ok((held, took))) = &faults.kill {
        report.measure("transactions held open when payments was killed", held);
        report.measure(
            "payments ready again after",
            format!("{:.2} s", took.as_secs_f64()),
        );
    }
    if let Some(Ok(held)) = &faults.pause {
        report.measure("transactions held open when RabbitMQ froze", held);
    }
    if let Some(after) = settled_after {
        report.measure("settled after", format!("{:.2} s", after.as_secs_f64()));
    }
    report.conclude(started.elapsed());
    Ok(report)
}

/// The faults as invariants: a fault that did not land at its moment
/// leaves the run unjudged (unknown), not passed.
fn push_faults(report: &mut Report, faults: &Faults, p: &Params) {
    let name = "payments was SIGKILLed between an event's write and its commit, and restarted";
    report.push(match &faults.kill {
        Some(Ok((held, _))) => Invariant::check(
            name,
            true,
            "≥ 1 transaction held",
            format!("{held} held; restarted and ready"),
            "GET /lab/outbox `held` just before SIGKILL; the control plane's start",
        ),
        Some(Err(why)) => Invariant::unknown(name, "≥ 1 transaction held", why),
        None => Invariant::unknown(
            name,
            "≥ 1 transaction held",
            "the run stopped before the kill",
        ),
    });
    let name = "RabbitMQ was frozen (SIGSTOP) mid-publish, then thawed";
    let expected = format!("frozen {} s with ≥ 1 transaction held", p.pause_secs);
    report.push(match &faults.pause {
        Some(Ok(held)) => Invariant::check(
            name,
            true,
            &expected,
            format!("frozen {} s, {held} held", p.pause_secs),
            "GET /lab/outbox `held` just before SIGSTOP",
        ),
        Some(Err(why)) => Invariant::unknown(name, &expected, why),
        None => Invariant::unknown(name, &expected, "the run stopped before the pause"),
    });
}

/// The two waves and their faults, then waits until Postgres is settled
/// and the bus quiet. Returns what the faults did and when it settled.
#[allow(clippy::too_many_arguments)]
async fn act_and_settle(
    ctx: &Ctx,
    lab: &Lab,
    p: &Params,
    ops: &[plan::Op],
    orders: &[Uuid],
    switches: &act::Switches,
    tap: &tap::Tap,
    deadline: Instant,
) -> Result<(Faults, Option<Duration>)> {
    let first = Instant::now();
    let mut faults = Faults::default();
    switches.set(p.control, p.hold_ms, deadline).await?;
    let commands = act::Commands::open(&lab.state.endpoints.amqp_url).await?;
    let wave = |n: usize| ops.iter().filter(move |o| o.wave == n).collect::<Vec<_>>();

    // Wave 1, then the kill while an event's transaction is held open.
    commands.send(&wave(0)).await?;
    faults.kill = Some(match switches.wait_held(deadline).await {
        Some(held) => act::kill_payments(ctx)
            .await
            .map(|took| (held, took))
            .map_err(|e| format!("{e:#}")),
        None => Err("no transaction was ever held open before the deadline".into()),
    });
    // A restart forgets the switches: set them again.
    switches.set(p.control, p.hold_ms, deadline).await?;

    // Wave 2, then freeze the broker at the same kind of moment.
    commands.send(&wave(1)).await?;
    faults.pause = Some(match switches.wait_held(deadline).await {
        Some(held) => act::pause_rabbitmq(ctx, Duration::from_secs(p.pause_secs))
            .await
            .map(|()| held)
            .map_err(|e| format!("{e:#}")),
        None => Err("no transaction was held open before the deadline".into()),
    });

    // Settle: every op's change committed, the run's outbox rows published
    // or dead, then the bus quiet for QUIET.
    let settled = loop {
        let committed = evidence::committed(&lab.pg, orders).await?;
        let outbox = evidence::outbox(&lab.pg, orders).await?;
        let db_settled =
            committed.len() >= orders.len() && outbox.iter().all(|r| r.published || r.dead);
        let quiet = tap.with(|s| s.last_at.is_none_or(|t| t.elapsed() >= QUIET));
        if db_settled && quiet {
            break Some(first.elapsed());
        }
        if Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Ok((faults, settled))
}
