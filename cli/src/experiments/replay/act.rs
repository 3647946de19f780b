//! Act: per key, N identical POSTs released together by a barrier, then
//! the same key with a different body, the key's rows read before and
//! after it. Every outcome and latency is recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::Barrier;

use super::Params;
use super::evidence::row_of;
use super::plan::{Key, Plan, mismatched};
use crate::clients::claims::{Answer, Claims};
use crate::clients::contract::claims::ClaimRequest;
use crate::run::{Lab, Latencies, Outcomes};

pub const LABEL: &str = "concurrent identical POSTs";
pub const LABEL_MISMATCH: &str = "same key, different body";

/// What the clients saw for one key.
#[derive(Debug, Clone, Default)]
pub struct KeyResult {
    /// 201s without `Idempotent-Replayed`.
    pub created: u64,
    /// 201s with `Idempotent-Replayed: true`.
    pub replayed: u64,
    /// Any other answer (status, or a transport error).
    pub other: Vec<String>,
    /// The claim id each 201 named.
    pub claim_ids: BTreeSet<String>,
    /// Each 201's body, raw.
    pub bodies: BTreeSet<Vec<u8>>,
    /// The status the mismatched body got.
    pub mismatch_status: Option<u16>,
    /// Whether the key's rows read the same before and after it.
    pub row_unchanged: Option<bool>,
}

#[derive(Debug, Default)]
pub struct Acted {
    pub keys: BTreeMap<String, KeyResult>,
    pub outcomes: Outcomes,
    pub latencies: Latencies,
}

/// One response as seen by a client.
struct Seen {
    answer: Answer,
    took: Duration,
}

impl Seen {
    fn status(&self) -> u16 {
        self.answer.status.as_u16()
    }
}

fn outcome(s: &Result<Seen, String>) -> String {
    match s {
        Ok(s) if s.status() == 201 && s.answer.replayed => "201 replayed".into(),
        Ok(s) if s.status() == 201 => "201 created".into(),
        Ok(s) => s.status().to_string(),
        Err(e) => format!("error: {e}"),
    }
}

pub async fn act(lab: &Lab, p: &Params, plan: &Plan) -> Result<Acted> {
    let mut acted = Acted::default();
    for k in &plan.keys {
        let mut kr = concurrent(p.n, plan, k, &mut acted).await?;
        // The same key with a different body must be refused and change nothing.
        let before = row_of(&lab.pg, plan.table, &k.key).await?;
        let seen = post(&plan.claims, plan.control, &k.key, &mismatched(&k.body)).await;
        acted.outcomes.add(LABEL_MISMATCH, outcome(&seen));
        if let Ok(s) = &seen {
            acted.latencies.record("mismatch (422)", s.took);
            kr.mismatch_status = Some(s.status());
        }
        kr.row_unchanged = Some(row_of(&lab.pg, plan.table, &k.key).await? == before);
        acted.keys.insert(k.key.clone(), kr);
    }
    Ok(acted)
}

/// N identical POSTs under one key, released together.
async fn concurrent(n: u32, plan: &Plan, k: &Key, acted: &mut Acted) -> Result<KeyResult> {
    let body = Arc::new(k.body.clone());
    let barrier = Arc::new(Barrier::new(n as usize));
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (claims, control, key, body, barrier) = (
                plan.claims.clone(),
                plan.control,
                k.key.clone(),
                body.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                post(&claims, control, &key, &body).await
            })
        })
        .collect();
    let mut kr = KeyResult::default();
    for t in tasks {
        let seen = t.await.context("a client panicked")?;
        let label = outcome(&seen);
        acted.outcomes.add(LABEL, label.clone());
        match seen {
            Ok(s) if s.status() == 201 => {
                if s.answer.replayed {
                    kr.replayed += 1
                } else {
                    kr.created += 1
                }
                let label = if s.answer.replayed {
                    "replay"
                } else {
                    "first write"
                };
                acted.latencies.record(label, s.took);
                let id = s.answer.claim().map(|c| c.claim_id.to_string());
                kr.claim_ids.insert(id.unwrap_or_else(|| "<none>".into()));
                kr.bodies.insert(s.answer.body);
            }
            Ok(s) => {
                acted.latencies.record("other", s.took);
                kr.other.push(label);
            }
            // As its outcome names it (`error: …`), so the check counts it.
            Err(_) => kr.other.push(label),
        }
    }
    Ok(kr)
}

/// One POST, to the lab's check-then-insert in the control arm.
async fn post(
    claims: &Claims,
    control: bool,
    key: &str,
    body: &ClaimRequest,
) -> Result<Seen, String> {
    let t = Instant::now();
    let answer = if control {
        claims.check_then_insert(key, body).await
    } else {
        claims.create(key, body).await
    };
    let answer = answer.map_err(|e| {
        if e.is_timeout() {
            "timeout".to_string()
        } else if e.is_body() || e.is_decode() {
            "body".to_string()
        } else {
            "transport".to_string()
        }
    })?;
    Ok(Seen {
        answer,
        took: t.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_error_is_named_as_an_error_which_the_check_counts() {
        assert_eq!(outcome(&Err("timeout".into())), "error: timeout");
        let answer = Answer {
            status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
            replayed: false,
            body: Vec::new(),
        };
        let seen = Seen {
            answer,
            took: Duration::ZERO,
        };
        assert_eq!(outcome(&Ok(seen)), "503");
    }
}
