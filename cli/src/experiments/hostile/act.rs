//! Sending the hostile requests and recording exactly what came back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde_json::json;

use super::check::Seen;
use super::evidence;
use super::plan::{Expect, Probe, Via};
use super::wire::{self, Answer, NoAnswer, Raw};
use crate::clients::bff_admin::BffAdmin as Gateway;
use crate::clients::bff_admin::{ChaosRequest, FaultSpec};
use crate::run::{Lab, Latencies, Outcomes};

/// One probe's answer must come within this.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// The outcome label of an answer (or its absence).
pub fn outcome(r: &Result<Answer, NoAnswer>) -> String {
    match r {
        Ok(a) => a.status.to_string(),
        Err(NoAnswer::Timeout) => "error: timeout".into(),
        Err(NoAnswer::Connect) => "error: connect".into(),
        Err(NoAnswer::Broken(_)) => "error: broken".into(),
    }
}

/// Where each kind of probe goes: `host:port` by service (`bff` included).
pub fn authorities(lab: &Lab) -> BTreeMap<String, String> {
    lab.state
        .endpoints
        .services
        .iter()
        .filter_map(|(svc, urls)| {
            let a = wire::authority(urls.first()?).ok()?;
            Some((svc.clone(), a))
        })
        .collect()
}

fn service_of(via: &Via) -> &'static str {
    match via {
        Via::Bff => "bff",
        Via::Direct(s) => s,
    }
}

/// Sends every probe (at most `concurrency` at once). Probes for a service
/// the fleet does not run are skipped and counted.
pub async fn run_probes(
    targets: &BTreeMap<String, String>,
    plan: Vec<Probe>,
    concurrency: usize,
) -> (Vec<Seen>, Outcomes, Latencies, u64) {
    let mut skipped = 0;
    let mut runnable = Vec::with_capacity(plan.len());
    for p in plan {
        match targets.get(service_of(&p.via)) {
            Some(a) => runnable.push((a.clone(), p)),
            None => skipped += 1,
        }
    }
    let results: Vec<(Probe, Result<Answer, NoAnswer>, Duration)> = futures::stream::iter(runnable)
        .map(|(authority, p)| async move {
            let (r, took) = wire::send(&authority, &p.raw, PROBE_TIMEOUT).await;
            (p, r, took)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut outcomes = Outcomes::default();
    let mut latencies = Latencies::default();
    let mut seen = Vec::with_capacity(results.len());
    for (p, r, took) in results {
        outcomes.add(p.class, outcome(&r));
        latencies.record(p.class, took);
        seen.push(Seen {
            class: p.class,
            expect: p.expect,
            what: format!("{} {} {}", service_of(&p.via), p.raw.method, p.raw.target),
            result: r,
        });
    }
    (seen, outcomes, latencies, skipped)
}

/// The guessing burst's result.
pub struct Guessed {
    pub answers: Vec<Result<Answer, NoAnswer>>,
    pub rss_before_mib: Option<f64>,
    pub rss_peak_mib: Option<f64>,
    pub latencies: Latencies,
}

/// `n` wrong-password logins at identity, all at once, with identity's
/// resident memory sampled every 50 ms until the last answer.
pub async fn guess(identity: &str, pid: Option<i32>, n: usize, seed: u64) -> Guessed {
    let rss_before_mib = pid.and_then(evidence::rss_mib);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let done = done.clone();
        async move {
            let mut peak: Option<f64> = None;
            loop {
                if let Some(m) = pid.and_then(evidence::rss_mib) {
                    peak = Some(peak.map_or(m, |p: f64| p.max(m)));
                }
                if done.load(Ordering::Relaxed) {
                    return peak;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let users = ["alice", "bob", "carol", "dave", "mallory", "root"];
    let sends = (0..n).map(|i| {
        let body = json!({"grant_type": "password", "username": users[i % users.len()],
                          "password": format!("guess-{seed}-{i}")});
        let raw = Raw {
            method: "POST".into(),
            target: "/token".into(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        };
        async move { wire::send(identity, &raw, Duration::from_secs(60)).await }
    });
    let results = futures::future::join_all(sends).await;
    done.store(true, Ordering::Relaxed);
    let rss_peak_mib = sampler.await.ok().flatten();
    let mut latencies = Latencies::default();
    let answers = results
        .into_iter()
        .map(|(r, took)| {
            latencies.record("guessing", took);
            r
        })
        .collect();
    Guessed {
        answers,
        rss_before_mib,
        rss_peak_mib,
        latencies,
    }
}

/// The control arm: what a broken shop lets through, mixed into the run so
/// the checkers must catch it — an honest write (a row changes), a public
/// path filed as private (it is reachable), and catalog answering 500
/// through the BFF (5xx; its breakers open). Chaos is cleared after.
pub async fn control(lab: &Lab, gw: &Gateway, product: i64) -> Result<Vec<Seen>> {
    let mut seen = Vec::new();
    let catalog = wire::authority(&lab.urls("catalog")?[0])?;
    let bff = wire::authority(&lab.urls("bff")?[0])?;
    let url = format!("{}/products/{product}", lab.urls("catalog")?[0]);
    let etag = lab
        .http
        .get(&url)
        .send()
        .await
        .context("control: GET the fixture")?
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("control: the fixture has no ETag")?;
    let patch = Raw {
        method: "PATCH".into(),
        target: format!("/products/{product}"),
        headers: vec![
            ("Content-Type".into(), "application/json".into()),
            ("If-Match".into(), etag),
        ],
        body: br#"{"price_cents": 1}"#.to_vec(),
    };
    let (r, _) = wire::send(&catalog, &patch, PROBE_TIMEOUT).await;
    seen.push(Seen {
        class: "control",
        expect: Expect::Refused,
        what: format!("catalog PATCH /products/{product} (an honest write)"),
        result: r,
    });
    let public = Raw {
        method: "GET".into(),
        target: format!("/api/catalog/products/{product}"),
        headers: vec![],
        body: vec![],
    };
    let (r, _) = wire::send(&bff, &public, PROBE_TIMEOUT).await;
    seen.push(Seen {
        class: "control",
        expect: Expect::Private,
        what: format!("bff GET /api/catalog/products/{product} (public, filed as private)"),
        result: r,
    });
    let failing = FaultSpec {
        error_rate: 1.0,
        error_status: 500,
        ..FaultSpec::on("catalog", 10)
    };
    gw.put_chaos(&ChaosRequest {
        seed: None,
        faults: vec![failing],
    })
    .await
    .context("control: set the BFF's chaos")?;
    for _ in 0..12 {
        let (r, _) = wire::send(&bff, &public, PROBE_TIMEOUT).await;
        seen.push(Seen {
            class: "control",
            expect: Expect::Refused,
            what: format!("bff GET /api/catalog/products/{product} (catalog failing)"),
            result: r,
        });
    }
    Ok(seen)
}
