//! Act: per round, N clients read the same ETag, wait on a barrier and send
//! the same decrement (phase 1); the replicas are polled until they serve
//! the winner's version; then every client retries until its decrement
//! lands (phase 2, not in the control arm). Every outcome and latency is
//! recorded; the stock after phase 1 is read between the phases.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::StatusCode;
use tokio::sync::Barrier;

use super::Params;
use super::evidence;
use super::plan::{Plan, Round};
use crate::clients::call::HttpError;
use crate::clients::catalog::{self, Catalog};
use crate::clients::contract::catalog::PatchBody;
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
    let replicas: Arc<Vec<Catalog>> = Arc::new(
        plan.urls
            .iter()
            .map(|u| {
                let c = Catalog::new(lab.http.clone(), u.clone());
                match &plan.lab_token {
                    Some(t) => c.with_lab_token(t.clone()),
                    None => c,
                }
            })
            .collect(),
    );
    // The control arm is the lab's blind read-modify-write, behind the token.
    let blind = plan.lab_token.is_some();
    let mut acted = Acted::default();
    for r in &plan.rounds {
        let t_round = Instant::now();
        let (race, winner_tag) = race(&replicas, r, p.n, blind, &mut acted).await?;
        let stock_after_race = evidence::stock(&lab.pg, r.id).await?;
        let convergence = match (p.control, winner_tag.as_deref()) {
            (true, _) => Convergence::NotAwaited,
            (false, None) => Convergence::NoWinner,
            (false, Some(tag)) => {
                let bound = Duration::from_millis(p.convergence_bound_ms);
                match convergence(&replicas, r.id, tag, bound).await {
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
            Some(retry_phase(&replicas, r.id, p.n, &mut acted).await?)
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
    replicas: &Arc<Vec<Catalog>>,
    r: &Round,
    n: u32,
    blind: bool,
    acted: &mut Acted,
) -> Result<(Outcomes, Option<String>)> {
    let id = r.id;
    let barrier = Arc::new(Barrier::new(n as usize));
    let mut tasks = Vec::new();
    for i in 0..n as usize {
        let (replicas, barrier) = (replicas.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let replica = &replicas[i % replicas.len()];
            let tag = etag(replica, id).await;
            barrier.wait().await;
            match tag {
                Ok(tag) => decrement(replica, id, &tag, blind).await,
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

/// The ETag `replica` serves for product `id` now.
async fn etag(replica: &Catalog, id: i64) -> Result<String> {
    Ok(catalog::etag(replica.product(id).await?.version))
}

/// One decrement attempt; returns the outcome, the latency and the new ETag on success.
async fn decrement(
    replica: &Catalog,
    id: i64,
    tag: &str,
    blind: bool,
) -> (String, Duration, Option<String>) {
    let t = Instant::now();
    let r = if blind {
        // The blind write answers the stocks it saw, not a version.
        replica.blind_decrement(id, 1).await.map(|_| None)
    } else {
        let body = PatchBody {
            stock_delta: Some(-1),
            ..PatchBody::default()
        };
        let written = replica.patch(id, tag, &body).await;
        written.map(|p| Some(catalog::etag(p.version)))
    };
    let took = t.elapsed();
    let outcome = outcome(&r);
    (outcome, took, r.ok().flatten())
}

/// The outcome label of a call, as `run::record::outcome_of` labels a raw
/// one: its status (both routes answer 200 on success), or the kind of
/// failure to get an answer at all.
fn outcome<T>(r: &Result<T>) -> String {
    let e = match r {
        Ok(_) => return StatusCode::OK.as_u16().to_string(),
        Err(e) => e,
    };
    if let Some(h) = e.downcast_ref::<HttpError>() {
        return h.status.as_u16().to_string();
    }
    match e.downcast_ref::<reqwest::Error>() {
        Some(re) if re.is_timeout() => "error: timeout".into(),
        Some(re) if re.is_connect() => "error: connect".into(),
        _ => "error: other".into(),
    }
}

/// Polls every replica until it serves `tag`; returns the slowest time, or None past the bound.
async fn convergence(
    replicas: &[Catalog],
    id: i64,
    tag: &str,
    bound: Duration,
) -> Option<Duration> {
    let t = Instant::now();
    for replica in replicas {
        loop {
            if etag(replica, id).await.ok().as_deref() == Some(tag) {
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
    replicas: &Arc<Vec<Catalog>>,
    id: i64,
    n: u32,
    acted: &mut Acted,
) -> Result<u32> {
    let barrier = Arc::new(Barrier::new(n as usize));
    let mut tasks = Vec::new();
    for i in 0..n as usize {
        let (replicas, barrier) = (replicas.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let replica = &replicas[i % replicas.len()];
            let (mut l, mut o) = (Latencies::default(), Outcomes::default());
            barrier.wait().await;
            let max_attempts = 20 * n;
            for _ in 0..max_attempts {
                let Ok(tag) = etag(replica, id).await else {
                    o.add(LABEL_RETRY, "error: read");
                    continue;
                };
                let (outcome, took, _) = decrement(replica, id, &tag, false).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_answer_is_labelled_by_its_status_as_a_raw_one_was() {
        let refused = |status| -> Result<()> {
            Err(HttpError {
                method: reqwest::Method::PATCH,
                url: "http://127.0.0.1:1/products/1".into(),
                status,
                detail: None,
            }
            .into())
        };
        assert_eq!(outcome(&Ok(())), "200");
        assert_eq!(outcome(&refused(StatusCode::PRECONDITION_FAILED)), "412");
        assert_eq!(outcome(&refused(StatusCode::SERVICE_UNAVAILABLE)), "503");
        assert_eq!(
            outcome::<()>(&Err(anyhow::anyhow!("not the expected JSON"))),
            "error: other"
        );
    }

    #[tokio::test]
    async fn a_replica_that_does_not_answer_is_a_connect_error() {
        // Port 1 on loopback: nothing listens, the connection is refused.
        let replica = Catalog::new(reqwest::Client::new(), "http://127.0.0.1:1");
        let (o, _, tag) = decrement(&replica, 1, "\"1\"", false).await;
        assert_eq!((o.as_str(), tag), ("error: connect", None));
    }
}
