//! The pure judgement of a hostile run: evidence in, invariants out.

use super::evidence::BreakerTotals;
use super::plan::Expect;
use super::wire::{Answer, NoAnswer};
use crate::run::Invariant;

/// One probe as it went.
#[derive(Debug, Clone)]
pub struct Seen {
    pub class: &'static str,
    pub expect: Expect,
    /// `BFF GET /api/...` or `catalog GET /products?...`, for the evidence.
    pub what: String,
    pub result: Result<Answer, NoAnswer>,
}

/// What the tables said.
#[derive(Debug, Clone)]
pub enum TableEvidence {
    /// Both snapshots read; these tables changed (empty: none).
    Compared {
        tables: usize,
        changed: Vec<String>,
    },
    /// The shop never went quiet before the run: these kept changing.
    NotQuiet(Vec<String>),
    Unreadable(String),
}

/// Rate-limit evasion: reads through the BFF, a new `X-Session-Id` each.
#[derive(Debug, Clone, Copy)]
pub struct Evasion {
    pub sent: u64,
    pub accepted: u64,
    pub limited: u64,
    pub other: u64,
    pub took_secs: f64,
    /// The BFF's bucket, from its `/admin/config`.
    pub capacity: u64,
    pub refill: u64,
}

impl Evasion {
    /// The most one bucket can grant in the time taken.
    pub fn bound(&self) -> u64 {
        self.capacity + (self.refill as f64 * self.took_secs).ceil() as u64 + 1
    }
}

/// Everything the check needs.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// Requests whose headers never finished, and whose body stalled.
    pub slow_headers: Vec<super::slow::Slow>,
    pub slow_bodies: Vec<super::slow::Slow>,
    pub evasion: Option<Evasion>,
    pub seen: Vec<Seen>,
    /// Wrong-password logins, all at once.
    pub guesses: Vec<Result<Answer, NoAnswer>>,
    pub breakers_before: Option<BreakerTotals>,
    pub breakers_after: Option<BreakerTotals>,
    pub tables: TableEvidence,
    /// Identity's peak resident memory while it was guessed at, MiB.
    pub rss_peak_mib: Option<f64>,
    pub rss_before_mib: Option<f64>,
    pub rss_bound_mib: f64,
}

/// A 503 that says when to come back: load shed on purpose (identity's
/// bounded password hashing), not a failure.
fn shed(a: &Answer) -> bool {
    a.status == 503 && a.retry_after && is_problem(a)
}

fn is_problem(a: &Answer) -> bool {
    a.content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/problem+json"))
}

fn examples<'a>(items: impl Iterator<Item = String> + 'a) -> String {
    let all: Vec<String> = items.collect();
    if all.is_empty() {
        return "none".into();
    }
    let shown: Vec<&str> = all.iter().take(3).map(String::as_str).collect();
    let more = all.len().saturating_sub(3);
    if more > 0 {
        format!("{} (+{more} more)", shown.join("; "))
    } else {
        shown.join("; ")
    }
}

fn label(s: &Seen) -> String {
    match &s.result {
        Ok(a) => format!("[{}] {} → {}", s.class, s.what, a.status),
        Err(e) => format!("[{}] {} → {e:?}", s.class, s.what),
    }
}

pub fn judge(e: &Evidence) -> Vec<Invariant> {
    let answers = || e.seen.iter().filter_map(|s| s.result.as_ref().ok());
    let guess_answers = || e.guesses.iter().filter_map(|g| g.as_ref().ok());
    let total = e.seen.len() + e.guesses.len();
    let mut out = Vec::new();

    let unanswered: Vec<String> = e
        .seen
        .iter()
        .filter(|s| s.result.is_err())
        .map(label)
        .chain(
            e.guesses
                .iter()
                .filter_map(|g| g.as_ref().err())
                .map(|err| format!("[guessing] POST /token → {err:?}")),
        )
        .collect();
    out.push(Invariant::check(
        "every hostile request answered (no hang, no dropped connection)",
        unanswered.is_empty(),
        "0 unanswered",
        format!("{} of {total}", unanswered.len()),
        examples(unanswered.into_iter()),
    ));

    let accepted: Vec<String> = e
        .seen
        .iter()
        .filter(|s| s.expect == Expect::Refused)
        .filter(|s| s.result.as_ref().is_ok_and(|a| a.status < 400))
        .map(label)
        .collect();
    let refused_total = e
        .seen
        .iter()
        .filter(|s| s.expect == Expect::Refused)
        .count();
    out.push(Invariant::check(
        "every hostile request refused with a 4xx, none accepted",
        accepted.is_empty(),
        "0 answered 1xx/2xx/3xx",
        format!("{} of {refused_total}", accepted.len()),
        examples(accepted.into_iter()),
    ));

    let reached: Vec<String> = e
        .seen
        .iter()
        .filter(|s| s.expect == Expect::Private)
        .filter(|s| s.result.as_ref().is_ok_and(|a| a.status < 400))
        .map(label)
        .collect();
    let private_total = e
        .seen
        .iter()
        .filter(|s| s.expect == Expect::Private)
        .count();
    out.push(Invariant::check(
        "no private path reachable (metrics, readiness, lab, admin, via traversal or directly)",
        reached.is_empty(),
        "0 answered 1xx/2xx/3xx",
        format!("{} of {private_total}", reached.len()),
        examples(reached.into_iter()),
    ));

    let server_errors: Vec<String> = e
        .seen
        .iter()
        .filter(|s| s.result.as_ref().is_ok_and(|a| a.status >= 500))
        .map(label)
        .chain(
            guess_answers()
                .filter(|a| a.status >= 500 && !shed(a))
                .map(|a| format!("[guessing] POST /token → {}", a.status)),
        )
        .collect();
    let shed_count = guess_answers().filter(|a| shed(a)).count();
    out.push(Invariant::check(
        "no 5xx (a 503 with Retry-After from bounded password hashing is load shedding)",
        server_errors.is_empty(),
        "0",
        server_errors.len(),
        format!(
            "{}; {shed_count} guesses shed with 503 + Retry-After",
            examples(server_errors.iter().cloned())
        ),
    ));

    let not_problem: Vec<String> = e
        .seen
        .iter()
        .filter(|s| {
            s.result
                .as_ref()
                .is_ok_and(|a| a.status >= 400 && !is_problem(a))
        })
        .map(|s| {
            let ct = s.result.as_ref().ok().and_then(|a| a.content_type.clone());
            format!(
                "{} ({})",
                label(s),
                ct.unwrap_or_else(|| "no content-type".into())
            )
        })
        .chain(
            guess_answers()
                .filter(|a| a.status >= 400 && !is_problem(a))
                .map(|a| format!("[guessing] POST /token → {}", a.status)),
        )
        .collect();
    let errors = answers()
        .chain(guess_answers())
        .filter(|a| a.status >= 400)
        .count();
    out.push(Invariant::check(
        "every error is application/problem+json",
        not_problem.is_empty(),
        "0 other bodies",
        format!("{} of {errors}", not_problem.len()),
        examples(not_problem.into_iter()),
    ));

    let guessed_in: Vec<String> = guess_answers()
        .filter(|a| !(matches!(a.status, 400 | 401 | 429) || shed(a)))
        .map(|a| a.status.to_string())
        .collect();
    out.push(Invariant::check(
        "password guessing refused (401, 429, or shed with 503 + Retry-After)",
        guessed_in.is_empty() && !e.guesses.is_empty(),
        "every guess refused",
        format!("{} of {} otherwise", guessed_in.len(), e.guesses.len()),
        examples(guessed_in.into_iter()),
    ));

    out.push(match (e.breakers_before, e.breakers_after) {
        (Some(b), Some(a)) => Invariant::check(
            "no breaker opened and no upstream failure counted",
            a.opened == b.opened && a.failures == b.failures && a.not_closed == 0,
            "opened +0, failures +0, all closed",
            format!(
                "opened +{}, failures +{}, {} not closed",
                a.opened.saturating_sub(b.opened),
                a.failures.saturating_sub(b.failures),
                a.not_closed
            ),
            "the BFF's GET /admin/breakers before and after, summed over instances",
        ),
        _ => Invariant::unknown(
            "no breaker opened and no upstream failure counted",
            "opened +0, failures +0",
            "the BFF's /admin/breakers could not be read",
        ),
    });

    let rows = "every table's rows and checksum unchanged by the rejected requests";
    out.push(match &e.tables {
        TableEvidence::Compared { tables, changed } => Invariant::check(
            rows,
            changed.is_empty(),
            "0 tables changed",
            format!("{} of {tables} changed", changed.len()),
            if changed.is_empty() {
                "count(*) and md5 of every row of every service table, before and after".into()
            } else {
                changed.join(", ")
            },
        ),
        TableEvidence::NotQuiet(moving) => Invariant::unknown(
            rows,
            "0 tables changed",
            format!(
                "the shop never went quiet before the run; still changing: {}",
                moving.join(", ")
            ),
        ),
        TableEvidence::Unreadable(why) => Invariant::unknown(rows, "0 tables changed", why),
    });

    let held: Vec<String> = e
        .slow_headers
        .iter()
        .filter(|s| !s.cut_off(false))
        .chain(e.slow_bodies.iter().filter(|s| !s.cut_off(true)))
        .map(|s| {
            format!(
                "{}: {:?} after {:.1} s",
                s.what,
                s.ended,
                s.after.as_secs_f64()
            )
        })
        .collect();
    let slow_total = e.slow_headers.len() + e.slow_bodies.len();
    out.push(Invariant::check(
        "slow clients are cut off (unfinished headers closed, a stalled body answered 408 problem+json)",
        held.is_empty() && slow_total > 0,
        format!("all within {} s", super::slow::CUT_OFF_BOUND.as_secs()),
        format!("{} of {slow_total} not", held.len()),
        if held.is_empty() {
            e.slow_headers
                .iter()
                .chain(&e.slow_bodies)
                .map(|s| format!("{}: {:?} after {:.1} s", s.what, s.ended, s.after.as_secs_f64()))
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            examples(held.into_iter())
        },
    ));

    let evade = "a new X-Session-Id per request buys no extra tokens (one bucket per address)";
    out.push(match e.evasion {
        Some(v) => Invariant::check(
            evade,
            v.accepted <= v.bound() && v.other == 0,
            format!(
                "≤ {} accepted (capacity {} + {}/s × {:.2} s + 1), nothing else",
                v.bound(),
                v.capacity,
                v.refill,
                v.took_secs
            ),
            format!(
                "{} accepted, {} × 429, {} other",
                v.accepted, v.limited, v.other
            ),
            format!(
                "{} reads through the BFF, each with a fresh X-Session-Id",
                v.sent
            ),
        ),
        None => Invariant::unknown(
            evade,
            "one bucket per address",
            "the BFF's /admin/config could not be read",
        ),
    });

    let rss = format!("identity's RSS ≤ {} MiB while guessed at", e.rss_bound_mib);
    out.push(match e.rss_peak_mib {
        Some(peak) => Invariant::check(
            &rss,
            peak <= e.rss_bound_mib,
            format!("≤ {} MiB", e.rss_bound_mib),
            format!("peak {peak:.1} MiB"),
            format!(
                "VmRSS from /proc every 50 ms during {} concurrent wrong-password logins (before: {})",
                e.guesses.len(),
                e.rss_before_mib
                    .map_or("?".into(), |b| format!("{b:.1} MiB"))
            ),
        ),
        None => Invariant::unknown(&rss, "a bounded RSS", "identity's /proc status unreadable"),
    });
    out
}

#[cfg(test)]
mod tests;
