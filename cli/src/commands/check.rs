//! `storefront check`: the shop's invariants judged now, over the orders
//! created since a given time — after any session, scripted or by hand.
//! The same checker `saga` and `load --profile checkout` judge with.

use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::json;

use crate::check::{self, Reading, Scope, Select};
use crate::commands::Global;
use crate::exit;
use crate::report::{CommonArgs, finish};
use crate::run::dur::parse_duration;
use crate::run::{Lab, Progress, Report};

/// The long help: what is judged.
pub const LONG_ABOUT: &str = "\
Judge the shop now: every order created since a time is terminal, its
money and stock add up, outboxes drained, no dead letters, one order per
Idempotency-Key, one claim per key.

Invariants, over the orders (checkout sagas) created since `--since`:
every order is terminal (waiting up to `--orders-settle` for stragglers);
completed orders hold their reservation with the order's items and were
captured exactly once for their total (checkout, payments and the
simulated provider agree); failed or rejected orders (authorization
timeouts included) hold no stock and no capture; the sum captured equals
the sum of completed totals; per product, the units the orders'
reservations (found by order id) hold equal the units completed orders
bought; every service's outbox drained and no row died since; the
dead-letter queues are empty (the broker's count); one order per
(customer, Idempotency-Key); a timed-out authorization waited the full
timeout after checkout's outbox published its command; one claim per
(owner, Idempotency-Key).";

#[derive(Debug, clap::Args)]
#[command(after_help = exit::HELP)]
pub struct Args {
    /// Judge orders created since: a duration ago (`10m`, `90s`, `1h30m`)
    /// or an RFC 3339 time (`2026-11-30T10:00:00Z`).
    #[arg(long, default_value = "10m", value_parser = parse_since)]
    pub since: DateTime<Utc>,
    /// How long orders still in flight get to become terminal and their
    /// messages to settle before they are judged (`30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub orders_settle: Duration,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<std::path::PathBuf>,
}

/// `--since`: RFC 3339, or a duration back from now.
fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(s) {
        return Ok(at.with_timezone(&Utc));
    }
    let ago = parse_duration(s)
        .map_err(|_| format!("`{s}` is neither a duration (10m, 90s) nor an RFC 3339 time"))?;
    let ago = chrono::Duration::from_std(ago).map_err(|e| e.to_string())?;
    Ok(Utc::now() - ago)
}

pub async fn run(g: &Global, args: Args) -> Result<u8> {
    let started = std::time::Instant::now();
    let ctx = g.ctx()?;
    let lab = Lab::connect(&ctx)
        .await?
        .with_progress(Progress::for_output(args.json));
    lab.progress.phase("check");
    let scope = Scope {
        since: args.since,
        select: Select::Since,
    };
    let reading = Reading {
        claims: true,
        ..Reading::default()
    };
    let shop = check::gather(&lab, &scope, reading, args.orders_settle).await?;
    lab.progress.count("orders read", shop.orders.len() as u64);
    let mut report = Report::new(
        "check",
        0,
        json!({"since": args.since.to_rfc3339(), "orders_settle_ms": args.orders_settle.as_millis()}),
    );
    for inv in check::judge(&shop) {
        report.push(inv);
    }
    for o in shop.orders.values() {
        let label = match &o.failure {
            Some(f) => format!("{} ({f})", o.state),
            None => o.state.clone(),
        };
        report.outcomes.add("orders", label);
    }
    report.measure("scope", &shop.scope);
    report.measure("orders judged", shop.orders.len());
    report.conclude(started.elapsed());
    lab.progress.judged(&report.invariants, report.verdict);
    let common = CommonArgs {
        seed: None,
        json: args.json,
        html: args.html,
    };
    finish(&report, &common, &ctx.profile.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_ago_or_an_rfc3339_time() {
        let before = Utc::now();
        let ten_ago = parse_since("10m").unwrap();
        let back = (before - ten_ago).num_seconds();
        assert!((599..=601).contains(&back), "{back}");
        assert_eq!(
            parse_since("2026-11-30T10:00:00Z").unwrap().to_rfc3339(),
            "2026-11-30T10:00:00+00:00"
        );
        assert!(parse_since("yesterday").is_err());
    }
}
