//! Two more hostile classes, each with its own way to be judged:
//!
//! - **slow clients**: a request whose headers never finish must be cut off
//!   (the connection closed, or a 408) and a body that stalls must get a 408
//!   problem+json — both within the servers' read timeouts, through the BFF
//!   and directly;
//! - **replayed webhooks**: deliveries genuinely signed by the provider's
//!   secret (payments' lab signing oracle, behind the lab token), replayed an
//!   hour late or with their body changed, must be refused.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::plan::{Expect, Probe, Via};
use super::wire::{self, Raw};
use crate::run::Lab;

/// The servers read headers and bodies within 10 s; this leaves room.
pub const CUT_OFF_BOUND: Duration = Duration::from_secs(15);

/// How one slow client ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slow {
    pub what: String,
    /// The server closed the connection, or answered this status.
    pub ended: Option<Ended>,
    pub after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Closed,
    Answered { status: u16, problem: bool },
}

impl Slow {
    /// Cut off in time: closed, or 408 problem+json (a stalled body must be
    /// answered, not just dropped).
    pub fn cut_off(&self, body_stalled: bool) -> bool {
        self.after <= CUT_OFF_BOUND
            && match &self.ended {
                Some(Ended::Answered {
                    status: 408,
                    problem: true,
                }) => true,
                Some(Ended::Closed) => !body_stalled,
                _ => false,
            }
    }
}

async fn hold(authority: String, what: String, bytes: Vec<u8>) -> Slow {
    let started = Instant::now();
    let run = async {
        let mut s = TcpStream::connect(&authority).await.ok()?;
        s.write_all(&bytes).await.ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        Some(match wire::parse(&buf) {
            Ok(a) => Ended::Answered {
                status: a.status,
                problem: a
                    .content_type
                    .is_some_and(|c| c.starts_with("application/problem+json")),
            },
            Err(_) => Ended::Closed,
        })
    };
    let ended = tokio::time::timeout(CUT_OFF_BOUND + Duration::from_secs(5), run)
        .await
        .ok()
        .flatten();
    Slow {
        what,
        ended,
        after: started.elapsed(),
    }
}

/// Partial headers and a stalled body, at `bff` (`/api/catalog/...`) and at
/// `catalog` directly. Returns (headers never finished, body stalled).
pub async fn slow_clients(bff: &str, catalog: &str) -> (Vec<Slow>, Vec<Slow>) {
    let partial = |a: &str, path: &str| {
        hold(
            a.to_owned(),
            format!("{a} GET {path}, headers never finished"),
            format!("GET {path} HTTP/1.1\r\nHost: {a}\r\nX-Slow: ").into_bytes(),
        )
    };
    let stalled = |a: &str, path: &str| {
        hold(
            a.to_owned(),
            format!("{a} POST {path}, 2 of 100 body bytes"),
            format!(
                "POST {path} HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\""
            )
            .into_bytes(),
        )
    };
    let (h1, h2, b1, b2) = tokio::join!(
        partial(bff, "/api/catalog/products/1"),
        partial(catalog, "/products/1"),
        stalled(bff, "/api/identity/token"),
        stalled(catalog, "/reservations"),
    );
    (vec![h1, h2], vec![b1, b2])
}

/// Genuinely signed deliveries, made unacceptable: replayed an hour late,
/// or with the signed body swapped for another. Signed by payments' lab
/// oracle with the lab token; `None` when the fleet has no token to sign with.
pub async fn replayed_webhooks(lab: &Lab, token: Option<&str>, n: usize) -> Result<Vec<Probe>> {
    let Some(token) = token else {
        return Ok(Vec::new());
    };
    let payments = &lab.urls("payments")?[0];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let provider = if i % 2 == 0 { "stripe" } else { "paypal" };
        let stale = i % 4 < 2;
        let body = json!({"id": format!("evt_replayed_{i}"), "type": "payment_intent.succeeded",
                          "data": {"object": {"id": format!("pi_replayed_{i}"), "amount": 100,
                                              "currency": "eur"}}})
        .to_string();
        let at = chrono::Utc::now().timestamp() - if stale { 3600 } else { 0 };
        let signed: Value = lab
            .http
            .post(format!("{payments}/lab/sign/{provider}"))
            .bearer_auth(token)
            .json(&json!({"body": body, "at": at}))
            .send()
            .await
            .context("replayed webhooks: payments' lab signing oracle")?
            .error_for_status()
            .context("replayed webhooks: the signing oracle refused")?
            .json()
            .await?;
        let headers = signed["headers"]
            .as_object()
            .or_else(|| signed.as_object())
            .context("replayed webhooks: the oracle's answer has no headers")?;
        let mut raw = Raw {
            method: "POST".into(),
            target: format!("/webhooks/{provider}"),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: if stale {
                body.into_bytes()
            } else {
                body.replace("\"amount\":100", "\"amount\":1").into_bytes()
            },
        };
        for (k, v) in headers {
            if let Some(v) = v.as_str() {
                raw.headers.push((k.clone(), v.to_owned()));
            }
        }
        out.push(Probe {
            class: "webhooks",
            via: Via::Direct("payments"),
            expect: Expect::Refused,
            raw,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(ended: Option<Ended>, secs: u64) -> Slow {
        Slow {
            what: "x".into(),
            ended,
            after: Duration::from_secs(secs),
        }
    }

    #[test]
    fn a_stalled_body_must_be_answered_408_problem_in_time() {
        let ok = Ended::Answered {
            status: 408,
            problem: true,
        };
        assert!(slow(Some(ok.clone()), 10).cut_off(true));
        assert!(!slow(Some(ok), 30).cut_off(true), "too late");
        assert!(
            !slow(Some(Ended::Closed), 10).cut_off(true),
            "dropped unanswered"
        );
        let bare = Ended::Answered {
            status: 408,
            problem: false,
        };
        assert!(!slow(Some(bare), 10).cut_off(true));
        assert!(!slow(None, 20).cut_off(true), "still held open");
    }

    #[test]
    fn unfinished_headers_may_simply_be_closed() {
        assert!(slow(Some(Ended::Closed), 10).cut_off(false));
        assert!(
            !slow(
                Some(Ended::Answered {
                    status: 200,
                    problem: false
                }),
                10
            )
            .cut_off(false)
        );
        assert!(!slow(None, 20).cut_off(false));
    }
}
