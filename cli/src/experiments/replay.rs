//! `storefront replay`: for each of K idempotency keys, N identical POSTs
//! released together; then the same key with a different body. The claims
//! service must let exactly one writer create the claim and replay it
//! byte-for-byte to everyone else, refuse the mismatch with 422, and hold
//! exactly one row per key. The control arm sends the same traffic down a
//! lab-only check-then-insert path, and the checks must catch what it does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Barrier;

use super::record::{Latencies, Outcomes};
use super::{Invariant, Lab, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// Concurrent identical requests per key.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub n: u32,
    /// Idempotency keys, one round each.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub keys: u32,
    /// Control arm: the naive check-then-insert path (needs lab_endpoints in the fleet profile).
    #[arg(long)]
    pub control: bool,
}

const LABEL: &str = "concurrent identical POSTs";
const LABEL_MISMATCH: &str = "same key, different body";

/// One response as seen by a client.
struct Seen {
    status: u16,
    replayed: bool,
    body: Vec<u8>,
    took: Duration,
}

fn outcome(s: &Result<Seen, String>) -> String {
    match s {
        Ok(s) if s.status == 201 && s.replayed => "201 replayed".into(),
        Ok(s) if s.status == 201 => "201 created".into(),
        Ok(s) => s.status.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

/// One POST; `lab_token` (the control arm's lab route needs it) goes as a
/// bearer token.
async fn post(
    http: &reqwest::Client,
    url: &str,
    lab_token: Option<&str>,
    key: &str,
    body: &Value,
) -> Result<Seen, String> {
    let t = Instant::now();
    let mut request = http.post(url).header("idempotency-key", key).json(body);
    if let Some(token) = lab_token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.map_err(|e| {
        if e.is_timeout() {
            "timeout".to_string()
        } else {
            "transport".to_string()
        }
    })?;
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    let body = r.bytes().await.map_err(|_| "body".to_string())?.to_vec();
    Ok(Seen {
        status,
        replayed,
        body,
        took: t.elapsed(),
    })
}

fn claim_body(rng: &mut impl Rng, k: u32) -> Value {
    const REASONS: [&str; 4] = ["damaged", "missing", "wrong_item", "other"];
    json!({
        "order_id": format!("order-{k}-{}", rng.random_range(10_000..99_999)),
        "customer_id": format!("customer-{}", rng.random_range(1..500)),
        "reason": REASONS[rng.random_range(0..REASONS.len())],
        "amount_cents": rng.random_range(100..50_000),
        "note": "filed by storefront replay",
    })
}

/// Per-key evidence gathered while acting.
#[derive(Default)]
struct KeyResult {
    created: u64,
    replayed: u64,
    other: Vec<String>,
    claim_ids: BTreeSet<String>,
    bodies: BTreeSet<Vec<u8>>,
    mismatch_status: Option<u16>,
    row_unchanged: Option<bool>,
}

pub async fn run(lab: &Lab, p: &Params, seed: u64) -> Result<Report> {
    let started = Instant::now();
    let mut report = Report::new(
        "replay",
        seed,
        json!({"n": p.n, "keys": p.keys, "control": p.control}),
    );
    let base = lab.urls("claims")?[0].clone();
    let (url, table) = if p.control {
        (
            format!("{base}/lab/claims/check-then-insert"),
            "claims.lab_claims",
        )
    } else {
        (format!("{base}/claims"), "claims.claims")
    };
    let lab_token: Option<Arc<str>> = if p.control {
        Some(Arc::from(super::race::lab_admin_token(lab)?))
    } else {
        None
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let run_id: u64 = rng.random();
    let (mut lat, mut out) = (Latencies::default(), Outcomes::default());
    let mut results: BTreeMap<String, KeyResult> = BTreeMap::new();
    for k in 0..p.keys {
        let key = format!("replay-{run_id:016x}-{k}");
        let body = Arc::new(claim_body(&mut rng, k));
        let barrier = Arc::new(Barrier::new(p.n as usize));
        let tasks: Vec<_> = (0..p.n)
            .map(|_| {
                let (http, url, token, key, body, barrier) = (
                    lab.http.clone(),
                    url.clone(),
                    lab_token.clone(),
                    key.clone(),
                    body.clone(),
                    barrier.clone(),
                );
                tokio::spawn(async move {
                    barrier.wait().await;
                    post(&http, &url, token.as_deref(), &key, &body).await
                })
            })
            .collect();
        let mut kr = KeyResult::default();
        for t in tasks {
            let seen = t.await?;
            out.add(LABEL, outcome(&seen));
            match seen {
                Ok(s) if s.status == 201 => {
                    if s.replayed {
                        kr.replayed += 1
                    } else {
                        kr.created += 1
                    }
                    lat.record(if s.replayed { "replay" } else { "first write" }, s.took);
                    let id = serde_json::from_slice::<Value>(&s.body)
                        .ok()
                        .and_then(|v| v["claim_id"].as_str().map(str::to_owned));
                    kr.claim_ids.insert(id.unwrap_or_else(|| "<none>".into()));
                    kr.bodies.insert(s.body);
                }
                Ok(s) => {
                    lat.record("other", s.took);
                    kr.other.push(s.status.to_string());
                }
                Err(e) => kr.other.push(e),
            }
        }
        // The same key with a different body must be refused and change nothing.
        let before = row_of(lab, table, &key).await?;
        let mut other_body = (*body).clone();
        other_body["amount_cents"] = json!(body["amount_cents"].as_i64().unwrap_or(0) + 1);
        let seen = post(&lab.http, &url, lab_token.as_deref(), &key, &other_body).await;
        out.add(LABEL_MISMATCH, outcome(&seen));
        if let Ok(s) = &seen {
            lat.record("mismatch (422)", s.took);
            kr.mismatch_status = Some(s.status);
        }
        kr.row_unchanged = Some(row_of(lab, table, &key).await? == before);
        results.insert(key, kr);
    }
    check(&mut report, lab, table, p, &results).await?;
    report.outcomes = out;
    report.latencies = lat;
    report.conclude(started.elapsed());
    Ok(report)
}

/// The stored rows of a key, as comparable text (all of them, in id order).
async fn row_of(lab: &Lab, table: &str, key: &str) -> Result<Vec<String>> {
    sqlx::query_scalar(&format!(
        "SELECT concat_ws('|', claim_id, request_hash, response_status, response_body) FROM {table} WHERE idempotency_key = $1 ORDER BY 1"
    ))
    .bind(key)
    .fetch_all(&lab.pg)
    .await
    .with_context(|| format!("ground truth: reading {table}"))
}

async fn check(
    report: &mut Report,
    lab: &Lab,
    table: &str,
    p: &Params,
    results: &BTreeMap<String, KeyResult>,
) -> Result<()> {
    let keys: Vec<String> = results.keys().cloned().collect();
    let rows: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(&format!(
        "SELECT idempotency_key, count(*) FROM {table} WHERE idempotency_key = ANY($1) GROUP BY 1"
    ))
    .bind(&keys)
    .fetch_all(&lab.pg)
    .await
    .with_context(|| format!("ground truth: counting rows in {table}"))?
    .into_iter()
    .collect();
    let bad = |f: &dyn Fn(&KeyResult) -> bool| -> Vec<&str> {
        results
            .iter()
            .filter(|(_, r)| f(r))
            .map(|(k, _)| k.as_str())
            .collect()
    };
    let show = |v: &[&str]| {
        if v.is_empty() {
            "every key".to_string()
        } else {
            format!("{} key(s) off, e.g. {}", v.len(), v[0])
        }
    };
    let n = u64::from(p.n);

    let one_created = bad(&|r| r.created != 1);
    report.push(Invariant::check(
        "exactly one 201 created per key",
        one_created.is_empty(),
        format!("1 per key × {}", p.keys),
        show(&one_created),
        "responses without Idempotent-Replayed",
    ));
    let replays = bad(&|r| r.replayed != n - 1);
    report.push(Invariant::check(
        "N−1 replays per key",
        replays.is_empty(),
        format!("{} per key", n - 1),
        show(&replays),
        "201 responses with Idempotent-Replayed: true",
    ));
    let same = bad(&|r| r.claim_ids.len() != 1 || r.bodies.len() != 1);
    report.push(Invariant::check(
        "every response for a key names one claim id, byte-identical body",
        same.is_empty(),
        "1 claim id and 1 distinct body per key",
        show(&same),
        "claim_id and raw bytes of every 201 body, compared per key",
    ));
    let row_bad: Vec<String> = keys
        .iter()
        .filter(|k| rows.get(*k).copied().unwrap_or(0) != 1)
        .map(|k| format!("{k}: {}", rows.get(k).copied().unwrap_or(0)))
        .collect();
    report.push(Invariant::check(
        "exactly one row per key in Postgres",
        row_bad.is_empty(),
        format!("1 row × {} keys", p.keys),
        if row_bad.is_empty() {
            "1 row for every key".into()
        } else {
            format!("{} key(s) with ≠1 row, e.g. {}", row_bad.len(), row_bad[0])
        },
        format!("SELECT idempotency_key, count(*) FROM {table} GROUP BY 1"),
    ));
    let mismatch = bad(&|r| r.mismatch_status != Some(422) || r.row_unchanged != Some(true));
    report.push(Invariant::check(
        "a different body under a used key got 422 and changed nothing",
        mismatch.is_empty(),
        "422 and the row as before, every key",
        show(&mismatch),
        "status of the mismatched request; the key's rows read before and after",
    ));
    let fivexx: u64 = results
        .values()
        .map(|r| {
            r.other
                .iter()
                .filter(|s| s.starts_with('5') || s.starts_with("error"))
                .count() as u64
        })
        .sum();
    report.push(Invariant::equal(
        "no 5xx or transport error",
        0,
        fivexx,
        "every response, counted",
    ));
    let dup_rows: i64 = rows.values().map(|c| (c - 1).max(0)).sum();
    if dup_rows > 0 {
        report.measure("duplicate rows found", dup_rows);
    }
    let _ = lab;
    Ok(())
}
