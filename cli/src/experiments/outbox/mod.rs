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

use super::experiment::{Env, Experiment};
use crate::clients::payments::Payments;
use crate::fleet::Ctx;
use crate::run::{Invariant, Lab, Report};
use check::{Arm, Evidence, Faults};

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

/// The outbox experiment (see the module docs).
pub struct Outbox;

/// The seeded operations and payments' lab switches.
pub struct Plan {
    pub arm: Arm,
    pub ops: Vec<plan::Op>,
    /// The operations' order ids, in plan order.
    pub orders: Vec<Uuid>,
    pub switches: act::Switches,
}

/// What acting saw: the faults, when it settled, what the tap saw.
pub struct Acted {
    pub faults: Faults,
    pub settled_after: Option<Duration>,
    pub seen: tap::Seen,
}

impl Experiment for Outbox {
    const NAME: &'static str = "outbox";
    type Params = Params;
    type Plan = Plan;
    type Acted = Acted;
    type Evidence = Evidence;

    fn params(p: &Params) -> serde_json::Value {
        json!({"ops": p.ops, "hold_ms": p.hold_ms, "pause_secs": p.pause_secs,
               "bound_secs": p.bound_secs, "control": p.control})
    }

    async fn arrange(env: &Env, p: &Params, seed: u64) -> Result<Plan> {
        let lab = &env.lab;
        let ops = plan::ops(p.ops as usize, seed);
        Ok(Plan {
            arm: if p.control {
                Arm::DualWrite
            } else {
                Arm::Outbox
            },
            orders: ops.iter().map(|o| o.order_id).collect(),
            ops,
            switches: act::Switches {
                payments: Payments {
                    lab_token: lab_token(lab)?,
                    ..Payments::new(lab.http.clone(), lab.urls("payments")?[0].clone())
                },
            },
        })
    }

    async fn act(env: &Env, p: &Params, plan: &Plan) -> Result<Acted> {
        let (ctx, lab) = (&env.ctx, &env.lab);
        let deadline = Instant::now() + Duration::from_secs(p.bound_secs);
        // The tap before anything is published, then the switches.
        let tap = tap::Tap::start(ctx, &lab.state).await?;
        let acted = act_and_settle(ctx, lab, p, plan, &tap, deadline).await;
        // Always: switches off, firehose off.
        let off = plan
            .switches
            .set(false, 0, Instant::now() + Duration::from_secs(10))
            .await;
        let (seen, trace_off) = tap.stop().await;
        let (faults, settled_after) = acted?;
        off.context("could not switch payments' lab switches off")?;
        trace_off.context("could not switch RabbitMQ's firehose off")?;
        Ok(Acted {
            faults,
            settled_after,
            seen,
        })
    }

    async fn evidence(env: &Env, _: &Params, plan: &Plan, acted: &Acted) -> Result<Evidence> {
        let (pg, orders) = (&env.lab.pg, &plan.orders);
        let ops: std::collections::HashSet<Uuid> = orders.iter().copied().collect();
        let bus = acted.seen.events.iter();
        Ok(Evidence {
            arm: plan.arm,
            ops: orders.clone(),
            committed: evidence::committed(pg, orders).await?,
            outbox: evidence::outbox(pg, orders).await?,
            bus: bus.filter(|e| ops.contains(&e.order_id)).cloned().collect(),
        })
    }

    fn check(p: &Params, _: &Plan, acted: &Acted, ev: &Evidence) -> Vec<Invariant> {
        let mut out = check::invariants(ev);
        out.extend(check::faults(&acted.faults, p.pause_secs));
        out
    }

    fn record(_: &Params, plan: Plan, acted: Acted, ev: Evidence, report: &mut Report) {
        let counts = check::count(&ev);
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
            match plan.arm {
                Arm::Outbox => "transactional outbox",
                Arm::DualWrite => "control: naive dual write (publish, then commit)",
            },
        );
        report.measure("lost events", counts.lost);
        report.measure("phantom events", counts.phantom);
        report.measure("redelivered copies (same id)", counts.redelivered);
        report.measure(
            "unreadable publishes to checkout.events",
            acted.seen.unreadable,
        );
        if let Some(Ok((held, took))) = &acted.faults.kill {
            report.measure("transactions held open when payments was killed", held);
            report.measure(
                "payments ready again after",
                format!("{:.2} s", took.as_secs_f64()),
            );
        }
        if let Some(Ok(held)) = &acted.faults.pause {
            report.measure("transactions held open when RabbitMQ froze", held);
        }
        if let Some(after) = acted.settled_after {
            report.measure("settled after", format!("{:.2} s", after.as_secs_f64()));
        }
    }
}

/// The two waves and their faults, then waits until Postgres is settled
/// and the bus quiet. Returns what the faults did and when it settled.
async fn act_and_settle(
    ctx: &Ctx,
    lab: &Lab,
    p: &Params,
    plan: &Plan,
    tap: &tap::Tap,
    deadline: Instant,
) -> Result<(Faults, Option<Duration>)> {
    let (ops, orders, switches) = (&plan.ops, &plan.orders, &plan.switches);
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
