//! Webhook chaos, beside the simulated provider's own (which already sends
//! some events twice and late): every genuine webhook payments accepted for
//! the run's orders is re-delivered 0–2 more times at random moments (so
//! 1–3 deliveries, out of order), freshly signed as a provider's resend
//! would be; and some forged ones are sent — a random signature, a valid
//! signature from an hour ago (stale), a valid signature over a tampered
//! body — each claiming something that would change a payment if believed.
//!
//! Signatures come from payments' lab-only signing oracle
//! (`POST /lab/sign/{provider}`), so the CLI never holds the secrets.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

/// How often payments' accepted webhooks are looked for.
const POLL: Duration = Duration::from_millis(100);
/// A re-delivery waits up to this long, so it lands out of order.
const MAX_REPLAY_DELAY_MS: u64 = 400;

/// What the chaos did.
#[derive(Debug, Default)]
pub struct Chaos {
    /// Statuses of the re-deliveries.
    pub replays: BTreeMap<String, u64>,
    /// Forged event ids and the statuses they got.
    pub forged: Vec<(String, String)>,
}

/// Where and how to send.
#[derive(Clone)]
pub struct Target {
    pub pg: PgPool,
    pub http: reqwest::Client,
    /// payments' base URL.
    pub payments: String,
}

impl Target {
    /// Headers signing `body` for `provider` at `at` (unix secs; now if None).
    async fn sign(
        &self,
        provider: &str,
        body: &str,
        at: Option<i64>,
    ) -> Result<Vec<(String, String)>> {
        let response = self
            .http
            .post(format!("{}/lab/sign/{provider}", self.payments))
            .json(&json!({"body": body, "at": at}))
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            bail!(
                "payments has no lab signing endpoint: the fleet profile must set lab_endpoints = true"
            );
        }
        let value: Value = response.error_for_status()?.json().await?;
        let headers = value["headers"]
            .as_object()
            .context("no headers in the signing answer")?;
        Ok(headers
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect())
    }

    /// POSTs a webhook; the status, or the error kind.
    async fn deliver(&self, provider: &str, body: String, headers: &[(String, String)]) -> String {
        let mut request = self
            .http
            .post(format!("{}/webhooks/{provider}", self.payments))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        crate::experiments::record::outcome_of(&request.send().await.map(|r| r.status()))
    }
}

/// One accepted webhook of the run.
struct Accepted {
    provider: String,
    event_id: String,
    body: String,
}

async fn accepted(pg: &PgPool, orders: &[Uuid]) -> Result<Vec<Accepted>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT w.provider, w.event_id, w.body::text FROM payments.webhook_events w \
         JOIN payments.payments p ON p.provider = w.provider AND p.provider_ref = w.provider_ref \
         WHERE p.order_id = ANY($1)",
    )
    .bind(orders)
    .fetch_all(pg)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(provider, event_id, body)| Accepted {
            provider,
            event_id,
            body,
        })
        .collect())
}

/// A body claiming something damaging about `intent`.
fn damaging_body(provider: &str, event_id: &str, intent: &str) -> String {
    if provider == "paypal" {
        json!({"id": event_id, "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource_type": "capture",
               "resource": {"id": intent, "amount": {"value": "0.01", "currency_code": "EUR"}}})
        .to_string()
    } else {
        json!({"id": event_id, "object": "event", "type": "payment_intent.succeeded",
               "data": {"object": {"id": intent, "object": "payment_intent", "amount": 1}}})
        .to_string()
    }
}

/// Sends forged webhook number `n` about `intent`; returns its event id and status.
async fn forge(
    target: &Target,
    n: usize,
    provider: &str,
    intent: &str,
    rng: u64,
) -> Result<(String, String)> {
    let event_id = if provider == "paypal" {
        format!("WH-FORGED-{}", Uuid::new_v4().simple())
    } else {
        format!("evt_forged_{}", Uuid::new_v4().simple())
    };
    let body = damaging_body(provider, &event_id, intent);
    let now = chrono::Utc::now().timestamp();
    let (sent, headers) = match n % 3 {
        // A signature nobody with the secret made.
        0 => {
            let mut headers = target.sign(provider, &body, None).await?;
            let random = format!(
                "{:016x}{:016x}{:016x}{:016x}",
                rng,
                rng.rotate_left(7),
                !rng,
                rng ^ 0x5a5a
            );
            for (k, v) in &mut headers {
                if k == "stripe-signature" {
                    *v = format!("t={now},v1={random}");
                } else if k == "paypal-transmission-sig" {
                    v.clone_from(&random);
                }
            }
            (body, headers)
        }
        // Genuinely signed, an hour ago: a replayed capture.
        1 => {
            let headers = target.sign(provider, &body, Some(now - 3600)).await?;
            (body, headers)
        }
        // Genuinely signed, then the body changed on the way.
        _ => {
            let headers = target.sign(provider, &body, None).await?;
            (
                body.replace("0.01", "9999.00")
                    .replace("\"amount\":1", "\"amount\":999900"),
                headers,
            )
        }
    };
    let status = target.deliver(provider, sent, &headers).await;
    Ok((event_id, status))
}

/// Runs until `stop` turns true: re-delivers the run's accepted webhooks
/// and sends `forged` forgeries, spread over the run.
pub async fn run(
    target: Target,
    orders: Arc<Mutex<Vec<Uuid>>>,
    forged: usize,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<Chaos> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xC4A0_5EED);
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let results = Arc::new(Mutex::new(Chaos::default()));
    let mut tasks = JoinSet::new();
    let mut forged_sent = 0;
    let mut signing_error = None;
    while !*stop.borrow() {
        let ids = orders.lock().expect("not poisoned").clone();
        let new: Vec<Accepted> = match accepted(&target.pg, &ids).await {
            Ok(all) => all
                .into_iter()
                .filter(|a| seen.insert((a.provider.clone(), a.event_id.clone())))
                .collect(),
            Err(error) => {
                tracing::debug!(%error, "webhook_events unreadable this round");
                Vec::new()
            }
        };
        for a in &new {
            for _ in 0..rng.random_range(0..=2) {
                let delay = Duration::from_millis(rng.random_range(0..=MAX_REPLAY_DELAY_MS));
                let (target, results) = (target.clone(), results.clone());
                let (provider, body) = (a.provider.clone(), a.body.clone());
                tasks.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let status = match target.sign(&provider, &body, None).await {
                        Ok(headers) => target.deliver(&provider, body, &headers).await,
                        Err(_) => "error: signing".into(),
                    };
                    *results
                        .lock()
                        .expect("not poisoned")
                        .replays
                        .entry(status)
                        .or_default() += 1;
                });
            }
        }
        // Forge about a payment of the run, one per round that saw news.
        if forged_sent < forged && !new.is_empty() {
            let a = &new[rng.random_range(0..new.len())];
            if let Some(intent) = intent_of(&a.body) {
                match forge(&target, forged_sent, &a.provider, &intent, rng.random()).await {
                    Ok(sent) => {
                        results.lock().expect("not poisoned").forged.push(sent);
                        forged_sent += 1;
                    }
                    Err(error) => signing_error = Some(error),
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
    while tasks.join_next().await.is_some() {}
    if let Some(error) = signing_error
        && results.lock().expect("not poisoned").forged.is_empty()
    {
        return Err(error.context("could not forge any webhook"));
    }
    let chaos = std::mem::take(&mut *results.lock().expect("not poisoned"));
    Ok(chaos)
}

/// The payment session id a stored webhook body names.
fn intent_of(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v.pointer("/data/object/id")
        .or_else(|| v.pointer("/resource/id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_intent_is_found_in_both_shapes() {
        assert_eq!(
            intent_of(r#"{"data":{"object":{"id":"pi_1"}}}"#).as_deref(),
            Some("pi_1")
        );
        assert_eq!(
            intent_of(r#"{"resource":{"id":"PAYID-1"}}"#).as_deref(),
            Some("PAYID-1")
        );
        assert_eq!(intent_of("{}"), None);
    }

    #[test]
    fn tampering_changes_the_bytes_of_both_shapes() {
        for provider in ["stripe", "paypal"] {
            let body = damaging_body(provider, "e", "i");
            let tampered = body
                .replace("0.01", "9999.00")
                .replace("\"amount\":1", "\"amount\":999900");
            assert_ne!(body, tampered, "{provider}");
        }
    }
}
