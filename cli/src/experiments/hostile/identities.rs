//! The hostile classes that need real credentials to misuse: a signed-in
//! browser session whose cookie is stolen (used cross-site, or without its
//! CSRF token), a guessed session cookie, an access token identity already
//! revoked, a customer's token on a staff-only write — and rate-limit
//! evasion (a fresh `X-Session-Id` on every request).
//!
//! The credentials are made in [`arrange`], before the "before" snapshot of
//! the tables (signing in writes identity's rows); the probes then only use
//! them, and must all be refused.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use serde_json::{Value, json};

use super::plan::{Expect, Probe, Via};
use super::wire::{self, Raw};
use crate::clients::identity::Identity;
use crate::run::Lab;
use crate::run::accounts;

/// What the probes misuse.
pub struct Stolen {
    /// A live `sf_session` cookie value and its CSRF token.
    pub cookie: String,
    pub csrf: String,
    /// An access token identity has revoked.
    pub revoked: String,
    /// A live customer's access token (not staff).
    pub customer: String,
}

async fn password_grant(identity: &Identity, user: &str) -> Result<String> {
    let granted = identity
        .login(user, &accounts::password(user))
        .await
        .with_context(|| format!("arrange: sign in as {user}"))?;
    Ok(granted.access_token)
}

/// Signs carol in through the BFF (a cookie session), and bob and alice in
/// at identity; revokes bob's token.
pub async fn arrange(lab: &Lab) -> Result<Stolen> {
    let bff = &lab.urls("bff")?[0];
    let identity = Identity::new(lab.http.clone(), lab.urls("identity")?[0].clone());
    let r = lab
        .http
        .post(format!("{bff}/api/session"))
        .json(&json!({"username": "carol", "password": "carol-password"}))
        .send()
        .await
        .context("arrange: sign in through the BFF")?;
    if r.status() != reqwest::StatusCode::CREATED {
        bail!(
            "arrange: the BFF's POST /api/session answered {}",
            r.status()
        );
    }
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("sf_session="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .context("arrange: no sf_session cookie")?;
    let body: Value = r.json().await?;
    let csrf = body["csrf_token"]
        .as_str()
        .map(str::to_owned)
        .context("arrange: no csrf_token")?;
    let revoked = password_grant(&identity, "bob").await?;
    identity
        .revoke(&revoked)
        .await
        .context("arrange: revoke bob's token")?;
    let customer = password_grant(&identity, "alice").await?;
    Ok(Stolen {
        cookie,
        csrf,
        revoked,
        customer,
    })
}

fn request(method: &str, target: &str, headers: Vec<(&str, String)>, body: &str) -> Raw {
    let mut headers: Vec<(String, String)> = headers
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    if !body.is_empty() {
        headers.push(("Content-Type".into(), "application/json".into()));
    }
    Raw {
        method: method.into(),
        target: target.into(),
        headers,
        body: body.as_bytes().to_vec(),
    }
}

/// One kind of misuse: the `i`-th probe's target and request.
type Variant<'a> = Box<dyn Fn(usize) -> (Via, Raw) + 'a>;

/// `n` probes that misuse `s`, through the BFF (and a revoked token
/// directly at identity too).
pub fn probes(s: &Stolen, n: usize) -> Vec<Probe> {
    let claim =
        json!({"order_id": "ord-stolen", "reason": "damaged", "amount_cents": 100}).to_string();
    let order = json!({"items": [{"product_id": 1, "quantity": 1}],
                       "card_number": "4242424242424242", "provider": "stripe"})
    .to_string();
    let cookie = |id: &str| ("Cookie", format!("sf_session={id}"));
    let key = |i: usize| ("Idempotency-Key", format!("hostile-session-{i}"));
    let variants: Vec<Variant<'_>> = vec![
        // A guessed cookie is no session: anonymous, and checkout needs a customer.
        Box::new(|i| {
            let guessed = format!("{:064x}", i as u128 * 0x9e37_79b9_7f4a_7c15);
            (
                Via::Bff,
                request(
                    "POST",
                    "/api/checkout/checkout",
                    vec![cookie(&guessed), key(i)],
                    &order,
                ),
            )
        }),
        // The stolen cookie from another site, CSRF token and all.
        Box::new(|i| {
            (
                Via::Bff,
                request(
                    "POST",
                    "/api/claims/claims",
                    vec![
                        cookie(&s.cookie),
                        ("X-CSRF-Token", s.csrf.clone()),
                        ("Origin", "http://evil.example".into()),
                        key(i),
                    ],
                    &claim,
                ),
            )
        }),
        Box::new(|_| {
            (
                Via::Bff,
                request(
                    "GET",
                    "/api/claims/claims/00000000-0000-4000-8000-000000000000",
                    vec![cookie(&s.cookie), ("Sec-Fetch-Site", "cross-site".into())],
                    "",
                ),
            )
        }),
        // The stolen cookie without its CSRF token, on an unsafe method.
        Box::new(|i| {
            (
                Via::Bff,
                request(
                    "POST",
                    "/api/claims/claims",
                    vec![cookie(&s.cookie), key(i)],
                    &claim,
                ),
            )
        }),
        // A revoked access token, at the edge and at identity.
        Box::new(|_| {
            (
                Via::Bff,
                request(
                    "GET",
                    "/api/checkout/checkout/00000000-0000-4000-8000-000000000000",
                    vec![("Authorization", format!("Bearer {}", s.revoked))],
                    "",
                ),
            )
        }),
        Box::new(|_| {
            (
                Via::Direct("identity"),
                request(
                    "GET",
                    "/userinfo",
                    vec![("Authorization", format!("Bearer {}", s.revoked))],
                    "",
                ),
            )
        }),
        // A customer's token on a staff-only write.
        Box::new(|_| {
            (
                Via::Bff,
                request(
                    "PATCH",
                    "/api/catalog/products/1",
                    vec![
                        ("Authorization", format!("Bearer {}", s.customer)),
                        ("If-Match", "\"1\"".into()),
                    ],
                    r#"{"price_cents": 1}"#,
                ),
            )
        }),
    ];
    (0..n)
        .map(|i| {
            let (via, raw) = variants[i % variants.len()](i);
            Probe {
                class: "sessions",
                via,
                expect: Expect::Refused,
                raw,
            }
        })
        .collect()
}

/// Rate-limit evasion: `n` reads through the BFF, each under a new
/// `X-Session-Id`, as fast as they go. Returns (accepted, refused with 429,
/// other, seconds taken).
pub async fn evade(bff: &str, n: usize) -> (u64, u64, u64, f64) {
    let started = Instant::now();
    let answers: Vec<Option<u16>> = futures::stream::iter(0..n)
        .map(|i| async move {
            let raw = request(
                "GET",
                "/api/catalog/products/1",
                vec![("X-Session-Id", format!("evader-{i}"))],
                "",
            );
            wire::send(bff, &raw, Duration::from_secs(15))
                .await
                .0
                .ok()
                .map(|a| a.status)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let took = started.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|a| **a == Some(200)).count() as u64;
    let limited = answers.iter().filter(|a| **a == Some(429)).count() as u64;
    (ok, limited, n as u64 - ok - limited, took)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stolen() -> Stolen {
        Stolen {
            cookie: "c".into(),
            csrf: "x".into(),
            revoked: "r.r.r".into(),
            customer: "a.a.a".into(),
        }
    }

    #[test]
    fn every_misuse_is_drawn_and_each_must_be_refused() {
        let p = probes(&stolen(), 14);
        assert_eq!(p.len(), 14);
        assert!(
            p.iter()
                .all(|p| p.expect == Expect::Refused && p.class == "sessions")
        );
        let text = |p: &Probe| format!("{:?}", p.raw.headers);
        assert!(p.iter().any(|p| text(p).contains("evil.example")));
        assert!(p.iter().any(|p| text(p).contains("Bearer r.r.r")));
        assert!(
            p.iter()
                .any(|p| p.raw.method == "PATCH" && text(p).contains("Bearer a.a.a"))
        );
        assert!(p.iter().any(|p| p.via == Via::Direct("identity")));
    }
}
