//! Act: per round, N clients read the same ETag, wait on a barrier and send
//! the same decrement (phase 1); the replicas are polled until they serve
//! the winner's version; then every client retries until its decrement
//! lands (phase 2, not in the control arm). Every outcome and latency is
//! recorded; the stock after phase 1 is read between the phases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Barrier;

use super::Params;
use super::evidence;
use super::plan::{Plan, Round};
use crate::run::record::outcome_of;
use crate::run::{Lab, Latencies, Outcomes};

pub const LABEL_RACE: &str = "phase 1: racing decrement";
pub const LABEL_RETRY: &str = "phase 2: retried decrement";
pub const LABEL_CONVERGENCE: &str = "replica convergence";

/// Whether both replicas came to serve the winner's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convergence {
    /// The control arm does not wait for it.
    NotAwaited,
    /// Every replica served it this long after the winning write.
    Within(Duration),
    /// Some replica still did not serve it at the bound.
    NotWithinBound,
    /// No request won, so there was no version to await.
    NoWinner,
}

/// What one round saw.
#[derive(Debug, Clone)]
pub struct RoundSeen {
    /// The racing requests' outcomes (under [`LABEL_RACE`]).
    pub race: Outcomes,
    /// Postgres stock right after phase 1.
    pub stock_after_race: i32,
    pub convergence: Convergence,
    /// Phase 2: how many of the N retrying clients landed (`None`: control arm).
    pub landed: Option<u32>,
}

impl RoundSeen {
    /// 2xx answers among the racing requests.
    pub fn won(&self) -> u64 {
        self.race.count_where(LABEL_RACE, |s| s.starts_with('2'))
    }

    pub fn refused(&self) -> u64 {
        self.race.count(LABEL_RACE, "412")
    }

    pub fn other(&self) -> u64 {
        self.race.total(LABEL_RACE) - self.won() - self.refused()
    }
}

#[derive(Debug, Default)]
pub struct Acted {
    /// In the plan's round order.
    pub rounds: Vec<RoundSeen>,
    pub outcomes: Outcomes,
    pub latencies: Latencies,
}

pub async fn act(lab: &Lab, p: &Params, plan: &Plan) -> Result<Acted> {
    let urls = Arc::new(plan.urls.clone());
    let token: Option<Arc<str>> = plan.lab_token.as_deref().map(Arc::from);
    let mut acted = Acted::default();
    for r in &plan.rounds {
        let t_round = Instant::now();
        let (race, winner_tag) = race(lab, &urls, r, p.n, token.clone(), &mut acted).await?;
        let stock_after_race = evidence::stock(&lab.pg, r.id).await?;
        let convergence = match (p.control, winner_tag.as_deref()) {
            (true, _) => Convergence::NotAwaited,
            (false, None) => Convergence::NoWinner,
            (false, Some(tag)) => {
                let bound = Duration::from_millis(p.convergence_bound_ms);
                match convergence(lab, &urls, r.id, tag, bound).await {
                    Some(d) => {
                        acted.latencies.record(LABEL_CONVERGENCE, d);
                        Convergence::Within(d)
                    }
                    None => Convergence::NotWithinBound,
                }
            }
        };
        let landed = if p.control {
            None
        } else {
            Some(retry_phase(lab, &urls, r.id, p.n, &mut acted).await?)
        };
        acted.latencies.record("round", t_round.elapsed());
        acted.rounds.push(RoundSeen {
            race,
            stock_after_race,
            convergence,
            landed,
        });
    }
    Ok(acted)
}

/// Phase 1: everyone reads the same version, then fires together. Returns
/// the round's outcomes and the winner's new ETag.
async fn race(
    lab: &Lab,
    urls: &Arc<Vec<String>>,
    r: &Round,
    n: u32,
    token: Option<Arc<str>>,
    acted: &mut Acted,
) -> Result<(Outcomes, Option<String>)> {
    let id = r.id;
    let barrier = Arc::new(Barrier::new(n as usize));
    let mut tasks = Vec::new();
    for i in 0..n as usize {
        let (http, urls, barrier, token) = (
            lab.http.clone(),
            urls.clone(),
            barrier.clone(),
            token.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let base = &urls[i % urls.len()];
            let tag = etag(&http, base, id).await;
            barrier.wait().await;
            match tag {
                Ok(tag) => decrement(&http, base, id, &tag, token.as_deref()).await,
                Err(e) => (format!("error: read: {e}"), Duration::ZERO, None),
            }
        }));
    }
    let mut round = Outcomes::default();
    let mut winner_tag = None;
    for t in tasks {
        let (o, took, tag) = t.await.context("a racing client panicked")?;
        if o.starts_with('2') {
            winner_tag = tag;
        }
        acted.latencies.record(LABEL_RACE, took);
        round.add(LABEL_RACE, o);
    }
    acted.outcomes.merge(&round);
    Ok((round, winner_tag))
}

async fn etag(http: &reqwest::Client, base: &str, id: i64) -> Result<String> {
    let r = http.get(format!("{base}/products/{id}")).send().await?;
    if r.status() != StatusCode::OK {
        bail!("GET /products/{id} on {base} answered {}", r.status());
    }
    r.headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("no ETag header")
}

/// One decrement attempt; returns the outcome, the latency and the new ETag on success.
async fn decrement(
    http: &reqwest::Client,
    base: &str,
    id: i64,
    tag: &str,
    lab_token: Option<&str>,
) -> (String, Duration, Option<String>) {
    let t = Instant::now();
    // The control arm is the lab's blind read-modify-write, behind the token.
    let req = if let Some(token) = lab_token {
        http.post(format!("{base}/lab/products/{id}/blind-decrement"))
            .bearer_auth(token)
            .json(&json!({"by": 1}))
    } else {
        http.patch(format!("{base}/products/{id}"))
            .header("if-match", tag)
            .json(&json!({"stock_delta": -1}))
    };
    let r = req.send().await;
    let took = t.elapsed();
    let new_tag = r
        .as_ref()
        .ok()
        .and_then(|r| r.headers().get("etag"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (outcome_of(&r.map(|r| r.status())), took, new_tag)
}

/// Polls every replica until it serves `tag`; returns the slowest time, or None past the bound.
async fn convergence(
    lab: &Lab,
    urls: &[String],
    id: i64,
    tag: &str,
    bound: Duration,
) -> Option<Duration> {
    let t = Instant::now();
    for base in urls {
        loop {
            if etag(&lab.http, base, id).await.ok().as_deref() == Some(tag) {
                break;
            }
            if t.elapsed() > bound {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Some(t.elapsed())
}

/// Phase 2: each client loops: read the ETag, send the conditional
/// decrement; on 412 read again. Returns how many landed (bounded
/// attempts; a stuck client counts as not landed).
async fn retry_phase(
    lab: &Lab,
    urls: &Arc<Vec<String>>,
    id: i64,
    n: u32,
    acted: &mut Acted,
) -> Result<u32> {
    let barrier = Arc::new(Barrier::new(n as usize));
    let mut tasks = Vec::new();
    for i in 0..n as usize {
        let (http, urls, barrier) = (lab.http.clone(), urls.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let base = &urls[i % urls.len()];
            let (mut l, mut o) = (Latencies::default(), Outcomes::default());
            barrier.wait().await;
            let max_attempts = 20 * n;
            for _ in 0..max_attempts {
                let Ok(tag) = etag(&http, base, id).await else {
                    o.add(LABEL_RETRY, "error: read");
                    continue;
                };
                let (outcome, took, _) = decrement(&http, base, id, &tag, None).await;
                l.record(LABEL_RETRY, took);
                let landed = outcome.starts_with('2');
                o.add(LABEL_RETRY, outcome);
                if landed {
                    return (true, l, o);
                }
            }
            (false, l, o)
        }));
    }
    let mut landed = 0;
    for t in tasks {
        let (ok, l, o) = t.await.context("a retrying client panicked")?;
        landed += u32::from(ok);
        acted.latencies.merge(&l);
        acted.outcomes.merge(&o);
    }
    Ok(landed)
}
