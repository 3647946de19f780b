//! Webhook chaos, beside the simulated provider's own (which already sends
//! some events twice and late): every genuine webhook payments accepted for
//! the run's orders is re-delivered 0–2 more times at random moments (so 1–3
//! deliveries, out of order; the first one seen at least once more, so that a
//! small run still has a re-delivery to check), freshly signed as a
//! provider's resend would be; and some forged ones are sent, in turn — a
//! random signature, a valid signature from an hour ago (stale), a valid
//! signature over a tampered body, a body forced to the CRC-32 of a genuine
//! delivery under that delivery's headers (issue 11's attack), and a
//! correctly signed claim the provider's record doesn't back — each claiming
//! something that would change a payment if believed. The first four must be
//! refused (400/401); the last is answered 200 but must not be applied.
//!
//! Signatures come from payments' lab-only signing oracle
//! (`POST /lab/sign/{provider}`, behind the lab admin token), so the CLI
//! never holds the webhook secrets.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::check::SIGNED;
use super::crc;
use super::plan::Scenario;

/// How often payments' accepted webhooks are looked for.
const POLL: Duration = Duration::from_millis(100);
/// A re-delivery waits up to this long, so it lands out of order.
const MAX_REPLAY_DELAY_MS: u64 = 400;
/// How long a resend keeps trying while payments cannot answer (a crash
/// run restarts it within a few seconds).
const RESEND_FOR: Duration = Duration::from_secs(20);
const RESEND_BACKOFF: Duration = Duration::from_millis(250);

/// Forgery kinds, taken in turn.
pub const FORGERY_KINDS: usize = 5;

/// What the chaos did.
#[derive(Debug, Default)]
pub struct Chaos {
    /// Statuses of the re-deliveries.
    pub replays: BTreeMap<String, u64>,
    /// Forged event ids and what they got: the status, and for a 2xx the
    /// outcome payments reported (`200 unconfirmed`).
    pub forged: Vec<(String, String)>,
}

/// Where and how to send.
#[derive(Clone)]
pub struct Target {
    pub pg: PgPool,
    pub http: reqwest::Client,
    /// payments' base URL.
    pub payments: String,
    /// The lab admin token `/lab/…` routes require (the profile's bff
    /// `BFF_ADMIN_TOKEN`, which the fleet hands every service).
    pub lab_token: Option<String>,
}

impl Target {
    /// Headers signing `body` for `provider` at `at` (unix secs; now if None).
    async fn sign(
        &self,
        provider: &str,
        body: &str,
        at: Option<i64>,
    ) -> Result<Vec<(String, String)>> {
        let mut request = self
            .http
            .post(format!("{}/lab/sign/{provider}", self.payments))
            .json(&json!({"body": body, "at": at}));
        if let Some(token) = &self.lab_token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            bail!(
                "payments has no lab signing endpoint: the fleet profile must set lab_endpoints = true"
            );
        }
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            bail!(
                "payments refused the lab signing request (401): the fleet profile's bff must set \
                 BFF_ADMIN_TOKEN, the lab admin token every service is given"
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

    /// A provider's resend of a genuine webhook: signed afresh and POSTed,
    /// and — as a provider does — tried again while payments cannot answer
    /// (it may be down mid-crash: no connection, a 5xx, or the signing
    /// oracle itself unreachable), until RESEND_FOR has passed. The last
    /// status is what counts; a 4xx is final at once.
    async fn resend(&self, provider: &str, body: &str) -> String {
        let deadline = tokio::time::Instant::now() + RESEND_FOR;
        loop {
            let status = match self.sign(provider, body, None).await {
                Ok(headers) => self.deliver(provider, body.to_owned(), &headers).await.0,
                Err(_) => "error: signing".into(),
            };
            let answered = status.starts_with('2') || status.starts_with('4');
            if answered || tokio::time::Instant::now() >= deadline {
                return status;
            }
            tokio::time::sleep(RESEND_BACKOFF).await;
        }
    }

    /// POSTs a webhook; the status (or the error kind), and for a 2xx the
    /// outcome payments reported.
    async fn deliver(
        &self,
        provider: &str,
        body: String,
        headers: &[(String, String)],
    ) -> (String, Option<String>) {
        let mut request = self
            .http
            .post(format!("{}/webhooks/{provider}", self.payments))
            .header("content-type", "application/json")
            .body(body);
        for (k, v) in headers {
            request = request.header(k, v);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return (crate::run::record::outcome_of(&Err(e)), None),
        };
        let status = crate::run::record::outcome_of(&Ok(response.status()));
        let outcome = if response.status().is_success() {
            response
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["outcome"].as_str().map(str::to_owned))
        } else {
            None
        };
        (status, outcome)
    }
}

/// One accepted webhook of the run.
struct Accepted {
    provider: String,
    event_id: String,
    body: String,
}

/// A round reads only webhooks received this long before the newest one
/// the previous round saw, or later. `received_at` is its transaction's
/// start, so a webhook whose transaction took longer than this to commit
/// is missed by the rounds; the last round reads them all.
const RECEIVED_MARGIN: Duration = Duration::from_secs(2);

/// The run's accepted webhooks received at `since` or later (all of them
/// if `None`), with the newest `received_at` among them.
///
/// Each round used to read every body of the run so far: on a 512-order
/// run, 50 rounds of 6.4 ms, the second largest statement in Postgres's
/// time. With 16,400 webhooks stored, 1,025 of them the run's, a round
/// took 14.6 to 16.5 ms reading them all and 10.8 to 12.0 ms reading from
/// the margin (eight of each; the table scan is left in both).
async fn accepted(
    pg: &PgPool,
    orders: &[Uuid],
    since: Option<DateTime<Utc>>,
) -> Result<(Vec<Accepted>, Option<DateTime<Utc>>)> {
    let rows: Vec<(String, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT w.provider, w.event_id, w.body::text, w.received_at FROM payments.webhook_events w \
         JOIN payments.payments p ON p.provider = w.provider AND p.provider_ref = w.provider_ref \
         WHERE p.order_id = ANY($1) AND ($2::timestamptz IS NULL OR w.received_at >= $2)",
    )
    .bind(orders)
    .bind(since)
    .fetch_all(pg)
    .await?;
    let newest = rows.iter().map(|r| r.3).max();
    let all = rows
        .into_iter()
        .map(|(provider, event_id, body, _)| Accepted {
            provider,
            event_id,
            body,
        })
        .collect();
    Ok((all, newest))
}

/// Where the next round reads from, given the newest webhook seen so far.
fn next_since(newest: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    let margin = chrono::Duration::from_std(RECEIVED_MARGIN).expect("a small margin");
    newest.map(|t| t - margin)
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

/// A body claiming the provider authorized `intent` for one cent.
fn authorization_claim(provider: &str, event_id: &str, intent: &str) -> String {
    if provider == "paypal" {
        json!({"id": event_id, "event_type": "PAYMENT.AUTHORIZATION.CREATED",
               "resource_type": "authorization",
               "resource": {"id": intent, "amount": {"value": "0.01", "currency_code": "EUR"}}})
        .to_string()
    } else {
        json!({"id": event_id, "object": "event", "type": "payment_intent.amount_capturable_updated",
               "data": {"object": {"id": intent, "object": "payment_intent", "amount": 1,
                                   "currency": "eur"}}})
        .to_string()
    }
}

/// A payment of the run an authorization claim would act on, so the signed
/// forgery reaches the provider check: `(provider, intent)`. Preferred:
/// one that stays put — voided (a late authorization would be released) or
/// pending on the never-confirming card; else one pending or authorized.
async fn claim_victim(pg: &PgPool, orders: &[Uuid], pick: u64) -> Option<(String, String)> {
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT provider, provider_ref, status = 'voided' OR card_last4 = $2 AS stays \
         FROM payments.payments \
         WHERE order_id = ANY($1) AND status IN ('pending', 'authorized', 'voided') \
         ORDER BY provider_ref",
    )
    .bind(orders)
    .bind(&Scenario::Timeout.card()[12..])
    .fetch_all(pg)
    .await
    .ok()?;
    let stays: Vec<_> = rows.iter().filter(|r| r.2).collect();
    let from: Vec<_> = if stays.is_empty() {
        rows.iter().collect()
    } else {
        stays
    };
    let n = from.len() as u64;
    (n > 0).then(|| {
        let (provider, intent, _) = from[(pick % n) as usize];
        (provider.clone(), intent.clone())
    })
}

/// A correctly signed claim (the lab oracle signs it, now) that only the
/// provider's record can refuse: payments answers 200 and must not apply it.
async fn forge_signed_claim(
    target: &Target,
    provider: &str,
    intent: &str,
) -> Result<(String, String)> {
    let event_id = forged_event_id(provider);
    let body = authorization_claim(provider, &event_id, intent);
    let headers = target.sign(provider, &body, None).await?;
    let answer = target.deliver(provider, body, &headers).await;
    Ok((event_id, label(true, answer)))
}

/// How a forgery's answer is reported: the status, the outcome payments
/// reported for a 2xx, and whether it was correctly signed (only those may
/// get a 2xx, and only if not applied; see `check`).
fn label(signed: bool, (status, outcome): (String, Option<String>)) -> String {
    let answer = match outcome {
        Some(outcome) => format!("{status} {outcome}"),
        None => status,
    };
    if signed {
        format!("{SIGNED}{answer}")
    } else {
        answer
    }
}

fn forged_event_id(provider: &str) -> String {
    if provider == "paypal" {
        format!("WH-FORGED-{}", Uuid::new_v4().simple())
    } else {
        format!("evt_forged_{}", Uuid::new_v4().simple())
    }
}

/// Sends forged webhook number `n` about `intent`; `genuine` is a body the
/// provider really sent (for the CRC arm). Returns its event id and what
/// it got.
async fn forge(
    target: &Target,
    n: usize,
    genuine: &Accepted,
    intent: &str,
    rng: u64,
) -> Result<(String, String)> {
    let provider = genuine.provider.as_str();
    let event_id = forged_event_id(provider);
    let body = damaging_body(provider, &event_id, intent);
    let now = chrono::Utc::now().timestamp();
    let (sent, headers) = match n % FORGERY_KINDS {
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
        2 => {
            let headers = target.sign(provider, &body, None).await?;
            (
                body.replace("0.01", "9999.00")
                    .replace("\"amount\":1", "\"amount\":999900"),
                headers,
            )
        }
        // A genuine delivery's headers, over a body forced to its CRC-32.
        3 => {
            let headers = target.sign(provider, &genuine.body, None).await?;
            let forged = crc::with_crc32(
                &padded_body(provider, &event_id, intent),
                crc::crc32(genuine.body.as_bytes()),
            )
            .context("forcing the CRC-32")?;
            (forged, headers)
        }
        // Correctly signed, now: see `forge_signed_claim`, which `run` uses
        // for this arm when a payment it would act on exists.
        _ => {
            let headers = target.sign(provider, &body, None).await?;
            (body, headers)
        }
    };
    let answer = target.deliver(provider, sent, &headers).await;
    Ok((
        event_id,
        label(n % FORGERY_KINDS == FORGERY_KINDS - 1, answer),
    ))
}

/// [`damaging_body`] with a `{pad}` for [`crc::with_crc32`].
fn padded_body(provider: &str, event_id: &str, intent: &str) -> String {
    let body = damaging_body(provider, event_id, intent);
    format!("{},\"pad\":\"{{pad}}\"}}", &body[..body.len() - 1])
}

/// Runs until `stop` turns true, then one round more: re-delivers the
/// run's accepted webhooks and sends `forged` forgeries, spread over the run.
pub async fn run(
    target: Target,
    orders: Arc<Mutex<Vec<Uuid>>>,
    forged: usize,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<Chaos> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xC4A0_5EED);
    let mut seen: HashSet<(String, String)> = HashSet::new();
    // Every genuine webhook seen so far, to forge about.
    let mut pool: Vec<Accepted> = Vec::new();
    let results = Arc::new(Mutex::new(Chaos::default()));
    let mut tasks = JoinSet::new();
    let mut forged_sent = 0;
    let mut signing_error = None;
    let mut redelivered_any = false;
    // The newest `received_at` read so far: rounds read from just before it.
    let mut newest: Option<DateTime<Utc>> = None;
    loop {
        // The round after `stop` is the last: webhooks accepted since the
        // previous poll still get their re-deliveries.
        let last = *stop.borrow();
        let ids = orders.lock().expect("not poisoned").clone();
        let since = if last { None } else { next_since(newest) };
        let new: Vec<Accepted> = match accepted(&target.pg, &ids, since).await {
            Ok((all, newest_now)) => {
                newest = newest.max(newest_now);
                all.into_iter()
                    .filter(|a| seen.insert((a.provider.clone(), a.event_id.clone())))
                    .collect()
            }
            Err(error) => {
                tracing::debug!(%error, "webhook_events unreadable this round");
                Vec::new()
            }
        };
        for a in &new {
            let times = resends(&mut rng, redelivered_any);
            redelivered_any |= times > 0;
            for _ in 0..times {
                let delay = Duration::from_millis(rng.random_range(0..=MAX_REPLAY_DELAY_MS));
                let (target, results) = (target.clone(), results.clone());
                let (provider, body) = (a.provider.clone(), a.body.clone());
                tasks.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let status = target.resend(&provider, &body).await;
                    *results
                        .lock()
                        .expect("not poisoned")
                        .replays
                        .entry(status)
                        .or_default() += 1;
                });
            }
        }
        // Forge about a payment of the run, one per round.
        pool.extend(new);
        if forged_sent < forged && !pool.is_empty() {
            let a = &pool[rng.random_range(0..pool.len())];
            let victim = if forged_sent % FORGERY_KINDS == FORGERY_KINDS - 1 {
                claim_victim(&target.pg, &ids, rng.random()).await
            } else {
                None
            };
            if let Some(intent) = intent_of(&a.body) {
                let sent = match &victim {
                    Some((provider, intent)) => forge_signed_claim(&target, provider, intent).await,
                    None => forge(&target, forged_sent, a, &intent, rng.random()).await,
                };
                match sent {
                    Ok(sent) => {
                        // A signed forgery is recorded: never take it for genuine.
                        for provider in ["stripe", "paypal"] {
                            seen.insert((provider.to_owned(), sent.0.clone()));
                        }
                        results.lock().expect("not poisoned").forged.push(sent);
                        forged_sent += 1;
                    }
                    Err(error) => signing_error = Some(error),
                }
            }
        }
        if last {
            break;
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

/// How many more times to deliver a genuine webhook: 0–2, but at least 1
/// until the run has re-delivered one, since a 2-order run could otherwise
/// draw none and leave its check without evidence (CI saw it).
fn resends(rng: &mut impl Rng, redelivered_any: bool) -> u32 {
    rng.random_range(u32::from(!redelivered_any)..=2)
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
mod tests;
