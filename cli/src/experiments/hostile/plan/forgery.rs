//! Forged credentials: webhooks with bad, stale or missing signatures,
//! JWTs identity never signed, garbage refresh tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::json;

use super::{Expect, Probe, Via, either, json_raw, probe, raw};

// --- webhooks, tokens -----------------------------------------------------

pub(super) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(super) fn hex64(rng: &mut StdRng) -> String {
    (0..32)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

pub(super) fn event_body(rng: &mut StdRng) -> String {
    json!({"id": format!("evt_hostile_{}", rng.random::<u32>()),
           "type": "payment_intent.succeeded",
           "data": {"object": {"id": format!("pi_{}", rng.random::<u32>()),
                               "amount": 100, "currency": "eur"}}})
    .to_string()
}

pub(super) fn forged_stripe(rng: &mut StdRng) -> Probe {
    let body = event_body(rng);
    let now = unix_now();
    let sig = match rng.random_range(0..5) {
        0 => None,
        1 => Some("garbage".to_owned()),
        2 => Some(format!("t={},v1={}", now - 3600, hex64(rng))),
        3 => Some(format!("t={},v1={}", now + 3600, hex64(rng))),
        _ => Some(format!("t={now},v1={}", hex64(rng))),
    };
    let mut r = json_raw("POST", "/webhooks/stripe", body);
    if let Some(s) = sig {
        r.headers.push(("Stripe-Signature".into(), s));
    }
    probe("webhooks", Via::Direct("payments"), Expect::Refused, r)
}

pub(super) fn forged_paypal(rng: &mut StdRng) -> Probe {
    let body = event_body(rng);
    let now = chrono::Utc::now();
    let time = match rng.random_range(0..3) {
        0 => (now - chrono::Duration::hours(2)).to_rfc3339(),
        1 => "yesterday".to_owned(),
        _ => now.to_rfc3339(),
    };
    let mut r = json_raw("POST", "/webhooks/paypal", body);
    if rng.random_bool(0.9) {
        r.headers.push((
            "PayPal-Transmission-Id".into(),
            format!("hostile-{}", rng.random::<u64>()),
        ));
        r.headers.push(("PayPal-Transmission-Time".into(), time));
        let sig = URL_SAFE_NO_PAD.encode(hex64(rng));
        r.headers.push(("PayPal-Transmission-Sig".into(), sig));
    }
    probe("webhooks", Via::Direct("payments"), Expect::Refused, r)
}

/// A JWT that identity never signed: `alg: none`, HS256 (key confusion),
/// EdDSA with a random signature (valid or unknown `kid`, live or expired).
pub fn forged_jwt(rng: &mut StdRng) -> String {
    let now = unix_now();
    let (alg, exp) = *[
        ("none", now + 600),
        ("HS256", now + 600),
        ("EdDSA", now + 600),
        ("EdDSA", now - 600),
        ("RS256", now + 600),
    ]
    .choose(rng)
    .expect("non-empty");
    let header = json!({"alg": alg, "typ": "JWT", "kid": format!("kid-{}", rng.random::<u16>())});
    let claims = json!({"sub": "00000000-0000-4000-8000-00000000a11c", "iss": "storefront-identity",
                        "aud": "storefront", "exp": exp, "iat": now - 60,
                        "jti": uuid::Uuid::new_v4(), "roles": ["staff"]});
    let sig = if alg == "none" {
        String::new()
    } else {
        let bytes: Vec<u8> = (0..64).map(|_| rng.random()).collect();
        URL_SAFE_NO_PAD.encode(bytes)
    };
    format!(
        "{}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

pub(super) fn forged_token(rng: &mut StdRng) -> Probe {
    let token = match rng.random_range(0..4) {
        0 => "garbage".to_owned(),
        1 => format!("{}.", forged_jwt(rng)),
        _ => forged_jwt(rng),
    };
    // `/userinfo` must refuse it. (`/revoke` is left out: RFC 7009 answers
    // 200 to an invalid token on purpose; the table checksums cover it.)
    let (via, path) = either(rng, "identity", "/userinfo");
    let mut r = raw("GET", path);
    r.headers
        .push(("Authorization".into(), format!("Bearer {token}")));
    probe("tokens", via, Expect::Refused, r)
}

pub(super) fn garbage_refresh(rng: &mut StdRng) -> Probe {
    let refresh = URL_SAFE_NO_PAD.encode(hex64(rng));
    let body = json!({"grant_type": "refresh_token", "refresh_token": refresh});
    let (via, path) = either(rng, "identity", "/token");
    probe(
        "tokens",
        via,
        Expect::Refused,
        json_raw("POST", path, body.to_string()),
    )
}
