//! A load run's result as plain data: per transaction counts, rates, error
//! share and both latency distributions; the thresholds and invariants with
//! their verdicts. `report::load` renders it; `hdrlog` writes and reads its
//! histograms.

use std::collections::BTreeMap;

use serde::Serialize;

use super::closed::GooseView;
use super::profile::ThresholdSpec;
use super::recorder::TxTally;
use crate::faults::outcome::FaultOutcome;
use crate::run::{Invariant, Verdict, overall};
use crate::run::{Mark, Seconds, Summary, Timeline, summarize};

#[derive(Debug, Serialize)]
pub struct LoadReport {
    pub profile: String,
    pub description: String,
    /// `closed: 20 users, ramp 10/s, 20s, think 50ms..200ms` or `open: 500/s for 10s`.
    pub model: String,
    /// Where the requests went (`through the BFF` or `direct: …`).
    pub target: String,
    pub seed: Option<u64>,
    /// Prefix of every UUID the run generated.
    pub run_tag: String,
    pub verdict: Verdict,
    /// Seconds the rates are computed over.
    pub window_s: f64,
    /// What `corrected` means in this run.
    pub corrected_means: String,
    pub transactions: Vec<TxReport>,
    pub thresholds: Vec<Invariant>,
    pub invariants: Vec<Invariant>,
    pub measurements: Vec<(String, String)>,
    pub took_ms: u64,
    /// The whole load second by second with its faults marked, each
    /// fault's outcome, and the clean-up after the checks.
    #[serde(flatten)]
    pub run: RunLog,
}

/// What a run adds beside its histograms: the timeline, the faults, the
/// clean-up. Empty for a report merged from interval logs.
#[derive(Debug, Default, Serialize)]
pub struct RunLog {
    /// Every transaction's seconds merged; the marks are the faults.
    pub timeline: Timeline,
    /// Each scheduled fault: start, end, injected or failed and why.
    pub faults: Vec<FaultOutcome>,
    /// The clean-up after the checks (releasing what the run's
    /// reservations still hold), once it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<Cleanup>,
    /// The run tag whose reservations the clean-up releases, if the
    /// profile's checks need it.
    #[serde(skip)]
    pub release_tag: Option<String>,
}

/// The clean-up's result: its own line, and its own exit consideration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    pub ok: bool,
    pub detail: String,
}

impl RunLog {
    /// The timeline of `txs` with `faults` marked on it.
    pub fn new(txs: &[TxReport], faults: Vec<FaultOutcome>) -> Self {
        let mut all = Seconds::default();
        for t in txs {
            all.merge(&t.tally.seconds);
        }
        let mut timeline = all.timeline(0);
        timeline.marks = faults.iter().map(FaultOutcome::mark).collect();
        Self {
            timeline,
            faults,
            cleanup: None,
            release_tag: None,
        }
    }

    /// The faults' marks (for a timeline drawn elsewhere).
    pub fn marks(&self) -> Vec<Mark> {
        self.timeline.marks.clone()
    }
}

#[derive(Debug, Serialize)]
pub struct TxReport {
    /// `scenario/transaction`.
    pub name: String,
    pub requests: u64,
    pub errors: u64,
    pub error_pct: f64,
    pub rps: f64,
    /// Exact count per status or error kind (empty when merged from HDR logs).
    pub outcomes: BTreeMap<String, u64>,
    /// Corrected for coordinated omission (what thresholds judge).
    pub corrected: Option<Summary>,
    /// As each request measured itself.
    pub raw: Option<Summary>,
    /// goose's own figures (closed model), for the cross-check.
    pub goose: Option<GooseView>,
    /// Second by second since the load began (empty when merged from logs).
    pub timeline: Timeline,
    #[serde(skip)]
    pub tally: TxTally,
}

impl TxReport {
    pub fn new(name: String, tally: TxTally, window_s: f64) -> Self {
        let requests = tally.count();
        let errors = tally.errors();
        let summary = |h: &hdrhistogram::Histogram<u64>| (!h.is_empty()).then(|| summarize(h));
        Self {
            name,
            requests,
            errors,
            error_pct: if requests == 0 {
                0.0
            } else {
                100.0 * errors as f64 / requests as f64
            },
            rps: if window_s > 0.0 {
                requests as f64 / window_s
            } else {
                0.0
            },
            outcomes: tally.outcomes.clone(),
            corrected: summary(&tally.corrected),
            raw: summary(&tally.raw),
            goose: None,
            timeline: tally.seconds.timeline(0),
            tally,
        }
    }
}

impl LoadReport {
    /// Any fail → fail; else any unknown (or nothing judged) → unknown.
    pub fn conclude(&mut self) {
        let all: Vec<Invariant> = self
            .thresholds
            .iter()
            .chain(&self.invariants)
            .cloned()
            .collect();
        self.verdict = overall(&all);
    }

    /// The verdict's code; a clean-up that failed after a passing run is
    /// an error (3): the run left reservations held.
    pub fn exit_code(&self) -> u8 {
        match (self.verdict, &self.run.cleanup) {
            (Verdict::Pass, Some(c)) if !c.ok => crate::exit::ERROR,
            (Verdict::Pass, _) => crate::exit::OK,
            (Verdict::Fail, _) => crate::exit::FAILED,
            (Verdict::Unknown, _) => crate::exit::UNKNOWN,
        }
    }

    /// Records the clean-up's result (after the report is out).
    pub fn cleaned_up(&mut self, released: anyhow::Result<usize>) {
        self.run.cleanup = Some(match released {
            Ok(0) => Cleanup {
                ok: true,
                detail: "no reservation of the run was left held".into(),
            },
            Ok(n) => Cleanup {
                ok: true,
                detail: format!("released {n} reservations the run left held"),
            },
            Err(e) => Cleanup {
                ok: false,
                detail: format!(
                    "FAILED: cannot release the run's reservations (the report above stands; stock stays held until they expire or are released): {e:#}"
                ),
            },
        });
    }

    pub fn totals(&self) -> (u64, u64, f64) {
        let r: u64 = self.transactions.iter().map(|t| t.requests).sum();
        let e: u64 = self.transactions.iter().map(|t| t.errors).sum();
        (r, e, self.transactions.iter().map(|t| t.rps).sum())
    }
}

/// One invariant per (transaction, limit) of each threshold; `*` applies a
/// threshold to every transaction. Latency limits judge the corrected
/// distribution; a transaction that made no request is `unknown`.
pub fn judge(specs: &[ThresholdSpec], txs: &[TxReport]) -> Vec<Invariant> {
    let mut out = Vec::new();
    for spec in specs {
        let target = spec.transaction.get_ref();
        for tx in txs.iter().filter(|t| target == "*" || &t.name == target) {
            let lat = |label: &str, limit: Option<f64>, pick: fn(&Summary) -> f64| {
                limit.map(|l| {
                    let name = format!("{} {label} ≤ {l} ms", tx.name);
                    match &tx.corrected {
                        None => {
                            Invariant::unknown(&name, format!("≤ {l} ms"), "no request was made")
                        }
                        Some(s) => Invariant::check(
                            &name,
                            pick(s) <= l,
                            format!("≤ {l} ms"),
                            format!("{:.3} ms", pick(s)),
                            format!("corrected latency of {} requests", tx.requests),
                        ),
                    }
                })
            };
            out.extend(
                [
                    lat("p50", spec.p50_ms, |s| s.p50_ms),
                    lat("p90", spec.p90_ms, |s| s.p90_ms),
                    lat("p99", spec.p99_ms, |s| s.p99_ms),
                    lat("p99.9", spec.p999_ms, |s| s.p999_ms),
                    lat("max", spec.max_ms, |s| s.max_ms),
                ]
                .into_iter()
                .flatten(),
            );
            if let Some(l) = spec.error_rate_pct {
                let name = format!("{} error rate ≤ {l} %", tx.name);
                out.push(if tx.requests == 0 {
                    Invariant::unknown(&name, format!("≤ {l} %"), "no request was made")
                } else {
                    Invariant::check(
                        &name,
                        tx.error_pct <= l,
                        format!("≤ {l} %"),
                        format!("{:.3} % ({} of {})", tx.error_pct, tx.errors, tx.requests),
                        "statuses outside the transaction's `success` list, and requests with no answer",
                    )
                });
            }
        }
    }
    out
}

/// The closed model's cross-check: our recorder and goose counted the same
/// requests and the same failures, per transaction.
pub fn cross_check(txs: &[TxReport]) -> Invariant {
    let mut bad = Vec::new();
    let (mut ours, mut theirs) = (0u64, 0u64);
    for t in txs {
        let (g, gf) = t
            .goose
            .as_ref()
            .map_or((0, Some(0)), |g| (g.requests, g.failures));
        ours += t.requests;
        theirs += g;
        if g != t.requests || gf.is_some_and(|f| f != t.errors) {
            bad.push(format!(
                "{}: ours {} ({} failed), goose {g} ({} failed)",
                t.name,
                t.requests,
                t.errors,
                gf.map_or("?".into(), |f| f.to_string())
            ));
        }
    }
    Invariant::check(
        "recorded request count = goose's count",
        bad.is_empty(),
        "the same requests per transaction, and the same failures where goose backfilled none",
        if bad.is_empty() {
            format!("{ours} = {theirs}")
        } else {
            bad.join("; ")
        },
        "our HDR recorder vs goose's raw request samples (its counters also hold the requests its coordinated-omission mitigation backfilled)",
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::load::profile::LoadProfile;
    use crate::load::recorder::{Recorder, Sample};

    fn txs() -> Vec<TxReport> {
        let r = Recorder::new(2, 1);
        for i in 0..100u64 {
            let ok = i != 0;
            r.record(
                0,
                Sample {
                    tx: (i % 2) as usize,
                    raw: Duration::from_millis(1 + i / 10),
                    corrected: Some(Duration::from_millis(1 + i / 10)),
                    outcome: if ok { "200" } else { "503" },
                    ok,
                },
            );
        }
        r.finish()
            .into_iter()
            .enumerate()
            .map(|(i, t)| TxReport::new(format!("s/t{i}"), t, 10.0))
            .collect()
    }

    fn specs(toml_thresholds: &str) -> Vec<ThresholdSpec> {
        let text = format!(
            "users = 1\nduration = \"1s\"\n[[scenarios]]\nname = \"s\"\n[[scenarios.transactions]]\nname = \"t0\"\nservice = \"c\"\nmethod = \"GET\"\npath = \"/\"\nsuccess = [200]\n[[scenarios.transactions]]\nname = \"t1\"\nservice = \"c\"\nmethod = \"GET\"\npath = \"/\"\nsuccess = [200]\n{toml_thresholds}"
        );
        LoadProfile::parse(&text, "t").unwrap().thresholds
    }

    #[test]
    fn a_star_threshold_judges_every_transaction_and_each_limit_is_one_invariant() {
        let t = txs();
        assert_eq!(t[0].requests, 50);
        assert!((t[0].rps - 5.0).abs() < 1e-9);
        let v = judge(
            &specs("[[thresholds]]\ntransaction = \"*\"\np99_ms = 1000\nerror_rate_pct = 5\n"),
            &t,
        );
        assert_eq!(v.len(), 4);
        assert!(v.iter().all(|i| i.verdict == Verdict::Pass), "{v:#?}");
    }

    #[test]
    fn an_impossible_latency_or_error_limit_fails() {
        let t = txs();
        let v = judge(
            &specs("[[thresholds]]\ntransaction = \"s/t0\"\np99_ms = 0.001\nerror_rate_pct = 1\n"),
            &t,
        );
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].verdict, Verdict::Fail, "{v:#?}");
        assert_eq!(v[0].name, "s/t0 p99 ≤ 0.001 ms");
        // t0 had the one 503 among its 50: 2 % > 1 %.
        assert_eq!(v[1].verdict, Verdict::Fail, "{v:#?}");
        assert!(v[1].observed.contains("1 of 50"), "{v:#?}");
    }

    #[test]
    fn the_cross_check_fails_when_goose_counted_differently() {
        let mut t = txs();
        let view = |requests, failures| GooseView {
            requests,
            backfilled: 0,
            failures: Some(failures),
            p50_ms: 1.0,
            p99_ms: 1.0,
            co_p99_ms: None,
        };
        t[0].goose = Some(view(50, 1));
        t[1].goose = Some(view(50, 0));
        assert_eq!(cross_check(&t).verdict, Verdict::Pass);
        t[1].goose = Some(view(49, 0));
        let inv = cross_check(&t);
        assert_eq!(inv.verdict, Verdict::Fail);
        assert!(inv.observed.contains("s/t1"), "{inv:?}");
    }
}
