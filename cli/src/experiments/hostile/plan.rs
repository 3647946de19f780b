//! The hostile requests, by class, drawn from a seed: what an attacker
//! sends to a shop — encoded traversal, NUL bytes, overflowing numbers,
//! malformed and deeply nested JSON, huge bodies, odd methods, bad ids,
//! forged webhooks and tokens, lab and admin calls without the token.
//! Every one of them must be refused; `Private` ones must never reach a
//! private path. Pure: no I/O, so the plan is the same for the same seed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

use super::wire::Raw;

/// Where a probe goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Via {
    /// Through the BFF, as a browser would.
    Bff,
    /// Straight to a service (its first instance).
    Direct(&'static str),
}

/// What a probe must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Expect {
    /// A 4xx: the request is refused, nothing changes.
    Refused,
    /// Not 2xx/3xx: a private path (metrics, readiness, lab, admin) must
    /// not be reachable this way.
    Private,
}

#[derive(Debug, Clone)]
pub struct Probe {
    pub class: &'static str,
    pub via: Via,
    pub expect: Expect,
    pub raw: Raw,
}

/// The classes, in the order they run.
pub const CLASSES: [&str; 10] = [
    "traversal",
    "nul",
    "overflow",
    "malformed",
    "methods",
    "bad-ids",
    "webhooks",
    "tokens",
    "lab",
    "admin",
];

/// `n` probes of every class, drawn with `seed`. `lab` says whether the
/// fleet mounts lab endpoints (their probes run either way: 401 or 404).
pub fn probes(seed: u64, n: usize) -> Vec<Probe> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * CLASSES.len());
    for class in CLASSES {
        let variants = variants(class);
        for i in 0..n {
            // Every variant at least once, then random ones.
            let v = if i < variants.len() {
                variants[i]
            } else {
                *variants.choose(&mut rng).expect("no class is empty")
            };
            out.push(v(&mut rng));
        }
    }
    out
}

type Variant = fn(&mut StdRng) -> Probe;

fn variants(class: &str) -> Vec<Variant> {
    match class {
        "traversal" => vec![
            traversal_dots,
            traversal_private,
            traversal_lab,
            encoded_service,
        ],
        "nul" => vec![
            nul_query,
            nul_claim,
            nul_username,
            nul_checkout,
            nul_webhook,
        ],
        "overflow" => vec![overflow_ids, overflow_quantity, overflow_stock_patch],
        "malformed" => vec![
            truncated_json,
            nested_json,
            huge_body,
            wrong_types,
            not_utf8,
        ],
        "methods" => vec![odd_method],
        "bad-ids" => vec![bad_id],
        "webhooks" => vec![forged_stripe, forged_paypal],
        "tokens" => vec![forged_token, garbage_refresh],
        "lab" => vec![lab_without_token],
        "admin" => vec![admin_without_token],
        _ => unreachable!("CLASSES lists every class"),
    }
}

const SERVICES_BEHIND_BFF: [&str; 4] = ["catalog", "claims", "identity", "checkout"];

fn raw(method: &str, target: impl Into<String>) -> Raw {
    Raw {
        method: method.into(),
        target: target.into(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

fn json_raw(method: &str, target: impl Into<String>, body: impl Into<Vec<u8>>) -> Raw {
    let mut r = raw(method, target);
    r.headers
        .push(("Content-Type".into(), "application/json".into()));
    r.body = body.into();
    r
}

fn probe(class: &'static str, via: Via, expect: Expect, raw: Raw) -> Probe {
    Probe {
        class,
        via,
        expect,
        raw,
    }
}

/// Through the BFF or directly to `service`, at random; the BFF path gets
/// its `/api/<service>` prefix.
fn either(rng: &mut StdRng, service: &'static str, path: &str) -> (Via, String) {
    if rng.random_bool(0.5) {
        (Via::Bff, format!("/api/{service}{path}"))
    } else {
        (Via::Direct(service), path.to_owned())
    }
}

// --- traversal -------------------------------------------------------------

const DOTS: [&str; 10] = [
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "%2e.",
    "..%2f..",
    "%2e%2e%2f",
    "..%5c",
    "%5c..",
    "..\\",
    "..;",
];
const PRIVATE: [&str; 6] = [
    "metrics",
    "ready",
    "health",
    "lab/lease",
    "admin/config",
    "admin/breakers",
];

fn traversal_dots(rng: &mut StdRng) -> Probe {
    let svc = SERVICES_BEHIND_BFF.choose(rng).expect("non-empty");
    let dots = DOTS.choose(rng).expect("non-empty");
    let private = PRIVATE.choose(rng).expect("non-empty");
    let depth = rng.random_range(1..=2);
    let path = format!("/api/{svc}/{}{private}", format!("{dots}/").repeat(depth));
    probe("traversal", Via::Bff, Expect::Private, raw("GET", path))
}

fn traversal_private(rng: &mut StdRng) -> Probe {
    let svc = SERVICES_BEHIND_BFF.choose(rng).expect("non-empty");
    let private = ["metrics", "ready", "health", "%6detrics", "metrics%3f"]
        .choose(rng)
        .expect("non-empty");
    let path = format!("/api/{svc}/{private}");
    probe("traversal", Via::Bff, Expect::Private, raw("GET", path))
}

fn traversal_lab(rng: &mut StdRng) -> Probe {
    let (method, path) = *[
        ("POST", "/api/catalog/lab/products/1/blind-decrement"),
        ("POST", "/api/claims/lab/claims/check-then-insert"),
        ("GET", "/api/identity/lab/lease"),
        ("POST", "/api/identity/lab/rotate"),
        ("PUT", "/api/identity/lab/rotation-mode"),
        ("GET", "/api/identity/%6cab/lease"),
        (
            "POST",
            "/api/catalog/products/%2e%2e/lab/products/1/blind-decrement",
        ),
    ]
    .choose(rng)
    .expect("non-empty");
    probe(
        "traversal",
        Via::Bff,
        Expect::Private,
        json_raw(method, path, "{}"),
    )
}

fn encoded_service(rng: &mut StdRng) -> Probe {
    let path = *[
        "/api/c%61talog/products/1",
        "/api/%63atalog/products/1",
        "/api/catalog%2fproducts/1",
        "/api/catalog/products%2f1",
        "/api//catalog/products/1",
        "/api/catalog/products/1%00",
        "/api/%00/products/1",
        "/api/unknown/products/1",
    ]
    .choose(rng)
    .expect("non-empty");
    probe("traversal", Via::Bff, Expect::Refused, raw("GET", path))
}

// --- nul --------------------------------------------------------------------

fn nul_query(rng: &mut StdRng) -> Probe {
    let q = ["%00", "a%00b", "%00%00", "coffee%00"]
        .choose(rng)
        .expect("non-empty");
    let (via, path) = either(rng, "catalog", &format!("/products?category={q}"));
    probe("nul", via, Expect::Refused, raw("GET", path))
}

fn claim_body(order_id: &str, note: &str) -> String {
    json!({"order_id": order_id, "customer_id": "cust-hostile", "reason": "damaged",
           "amount_cents": 100, "note": note})
    .to_string()
}

fn nul_claim(rng: &mut StdRng) -> Probe {
    let body = if rng.random_bool(0.5) {
        claim_body("ord\u{0}1", "fine")
    } else {
        claim_body("ord-1", "bad\u{0}note")
    };
    let (via, path) = either(rng, "claims", "/claims");
    let mut r = json_raw("POST", path, body);
    r.headers.push((
        "Idempotency-Key".into(),
        format!("hostile-{}", rng.random::<u64>()),
    ));
    probe("nul", via, Expect::Refused, r)
}

fn nul_username(rng: &mut StdRng) -> Probe {
    let body = json!({"grant_type": "password", "username": "al\u{0}ice", "password": "x"});
    let (via, path) = either(rng, "identity", "/token");
    probe(
        "nul",
        via,
        Expect::Refused,
        json_raw("POST", path, body.to_string()),
    )
}

fn checkout_body(product_id: serde_json::Value, quantity: serde_json::Value, card: &str) -> String {
    json!({"items": [{"product_id": product_id, "quantity": quantity}],
           "card_number": card, "provider": "stripe"})
    .to_string()
}

fn checkout_raw(rng: &mut StdRng, body: String) -> (Via, Raw) {
    let (via, path) = either(rng, "checkout", "/checkout");
    let mut r = json_raw("POST", path, body);
    r.headers.push((
        "Idempotency-Key".into(),
        format!("hostile-{}", rng.random::<u64>()),
    ));
    (via, r)
}

fn nul_checkout(rng: &mut StdRng) -> Probe {
    let body = checkout_body(json!(1), json!(1), "4242\u{0}424242424242");
    let (via, r) = checkout_raw(rng, body);
    probe("nul", via, Expect::Refused, r)
}

fn nul_webhook(rng: &mut StdRng) -> Probe {
    let body = json!({"id": "evt_hostile", "type": "payment_intent.succeeded\u{0}",
                      "data": {"object": {"id": "pi_x\u{0}"}}});
    let mut r = json_raw("POST", "/webhooks/stripe", body.to_string());
    r.headers.push((
        "Stripe-Signature".into(),
        format!("t={},v1={}", unix_now(), hex64(rng)),
    ));
    probe("nul", Via::Direct("payments"), Expect::Refused, r)
}

// --- overflow ---------------------------------------------------------------

fn overflow_ids(rng: &mut StdRng) -> Probe {
    let id = [json!(0), json!(-1), json!(i64::MAX), json!(i64::MIN)]
        .choose(rng)
        .expect("non-empty")
        .clone();
    let (via, r) = checkout_raw(rng, checkout_body(id, json!(1), "4242424242424242"));
    probe("overflow", via, Expect::Refused, r)
}

fn overflow_quantity(rng: &mut StdRng) -> Probe {
    let q = [
        json!(i32::MAX),
        json!(-1),
        json!(0),
        json!(2_147_483_648_i64),
        json!(4_611_686_018_427_387_905_i64),
        json!(1e300),
    ]
    .choose(rng)
    .expect("non-empty")
    .clone();
    let (via, r) = checkout_raw(rng, checkout_body(json!(1), q, "4242424242424242"));
    probe("overflow", via, Expect::Refused, r)
}

fn overflow_stock_patch(rng: &mut StdRng) -> Probe {
    let body = [
        json!({"stock": 3_000_000_000_i64}),
        json!({"stock_delta": i64::MIN}),
        json!({"stock_delta": 2_147_483_647}),
        json!({"price_cents": -1}),
        json!({"price_cents": 1e30}),
    ]
    .choose(rng)
    .expect("non-empty")
    .to_string();
    let (via, path) = either(rng, "catalog", "/products/1");
    let mut r = json_raw("PATCH", path, body);
    r.headers
        .push(("If-Match".into(), format!("\"{}\"", rng.random::<u32>())));
    probe("overflow", via, Expect::Refused, r)
}

// --- malformed --------------------------------------------------------------

/// A POST to one of the JSON endpoints, with `body`.
fn json_endpoint(rng: &mut StdRng, body: Vec<u8>) -> (Via, Raw) {
    let (service, path) = *[
        ("claims", "/claims"),
        ("checkout", "/checkout"),
        ("identity", "/token"),
        ("catalog", "/reservations"),
    ]
    .choose(rng)
    .expect("non-empty");
    let (via, path) = either(rng, service, path);
    let mut r = json_raw("POST", path, body);
    r.headers.push((
        "Idempotency-Key".into(),
        format!("hostile-{}", rng.random::<u64>()),
    ));
    (via, r)
}

fn truncated_json(rng: &mut StdRng) -> Probe {
    let body = *[
        "{\"order_id\":",
        "{",
        "[",
        "{\"items\":[{\"product_id\":1,",
        "nul",
        "",
        "{\"a\":1}}",
    ]
    .choose(rng)
    .expect("non-empty");
    let (via, r) = json_endpoint(rng, body.as_bytes().to_vec());
    probe("malformed", via, Expect::Refused, r)
}

fn nested_json(rng: &mut StdRng) -> Probe {
    let depth = rng.random_range(1_000..=20_000);
    let body = if rng.random_bool(0.5) {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    } else {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    };
    let (via, r) = json_endpoint(rng, body.into_bytes());
    probe("malformed", via, Expect::Refused, r)
}

fn huge_body(rng: &mut StdRng) -> Probe {
    let size = rng.random_range(1_100_000..=2_500_000);
    let body = format!("{{\"note\":\"{}\"}}", "x".repeat(size));
    let (via, r) = json_endpoint(rng, body.into_bytes());
    probe("malformed", via, Expect::Refused, r)
}

fn wrong_types(rng: &mut StdRng) -> Probe {
    let body = *[
        "{\"items\":\"x\",\"card_number\":1,\"provider\":[]}",
        "[1,2,3]",
        "\"just a string\"",
        "{\"grant_type\":{\"$ne\":null}}",
        "{\"order_id\":null,\"amount_cents\":\"1; DROP TABLE claims\"}",
        "{\"items\":[{\"product_id\":\"1 OR 1=1\",\"quantity\":1}]}",
    ]
    .choose(rng)
    .expect("non-empty");
    let (via, r) = json_endpoint(rng, body.as_bytes().to_vec());
    probe("malformed", via, Expect::Refused, r)
}

fn not_utf8(rng: &mut StdRng) -> Probe {
    let body = b"{\"order_id\":\"\xff\xfe\xfd\",\"note\":\"\xc3\x28\"}".to_vec();
    let (via, r) = json_endpoint(rng, body);
    probe("malformed", via, Expect::Refused, r)
}

// --- methods and ids ----------------------------------------------------------

fn odd_method(rng: &mut StdRng) -> Probe {
    let (service, path) = *[
        ("catalog", "/products"),
        ("catalog", "/products/1"),
        ("claims", "/claims"),
        ("checkout", "/checkout"),
        ("identity", "/token"),
        ("identity", "/.well-known/jwks.json"),
    ]
    .choose(rng)
    .expect("non-empty");
    let method = *["TRACE", "PROPFIND", "DELETE", "PUT", "BREW", "MKCOL"]
        .choose(rng)
        .expect("non-empty");
    let (via, path) = either(rng, service, path);
    probe("methods", via, Expect::Refused, raw(method, path))
}

fn bad_id(rng: &mut StdRng) -> Probe {
    let (method, service, path) = *[
        ("GET", "catalog", "/products/abc"),
        ("GET", "catalog", "/products/-1"),
        ("GET", "catalog", "/products/0"),
        ("GET", "catalog", "/products/99999999999999999999"),
        ("GET", "catalog", "/products/1.5"),
        ("GET", "catalog", "/products/9223372036854775807"),
        ("GET", "claims", "/claims/not-a-uuid"),
        (
            "GET",
            "claims",
            "/claims/00000000-0000-0000-0000-000000000000",
        ),
        ("GET", "checkout", "/checkout/zzz"),
        (
            "GET",
            "checkout",
            "/checkout/00000000-0000-4000-8000-000000000000",
        ),
        ("DELETE", "catalog", "/reservations/not-a-uuid"),
    ]
    .choose(rng)
    .expect("non-empty");
    let (via, path) = either(rng, service, path);
    probe("bad-ids", via, Expect::Refused, raw(method, path))
}

// --- webhooks, tokens -----------------------------------------------------

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn hex64(rng: &mut StdRng) -> String {
    (0..32)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn event_body(rng: &mut StdRng) -> String {
    json!({"id": format!("evt_hostile_{}", rng.random::<u32>()),
           "type": "payment_intent.succeeded",
           "data": {"object": {"id": format!("pi_{}", rng.random::<u32>()),
                               "amount": 100, "currency": "eur"}}})
    .to_string()
}

fn forged_stripe(rng: &mut StdRng) -> Probe {
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

fn forged_paypal(rng: &mut StdRng) -> Probe {
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

fn forged_token(rng: &mut StdRng) -> Probe {
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

fn garbage_refresh(rng: &mut StdRng) -> Probe {
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

// --- lab, admin --------------------------------------------------------------

fn lab_without_token(rng: &mut StdRng) -> Probe {
    let (service, method, path) = *[
        ("catalog", "POST", "/lab/products/1/blind-decrement"),
        ("claims", "POST", "/lab/claims/check-then-insert"),
        ("identity", "GET", "/lab/lease"),
        ("identity", "POST", "/lab/rotate"),
        ("identity", "PUT", "/lab/rotation-mode"),
        ("payments", "POST", "/lab/sign/stripe"),
    ]
    .choose(rng)
    .expect("non-empty");
    let mut r = json_raw(method, path, "{\"mode\":\"naive\"}");
    if rng.random_bool(0.5) {
        r.headers
            .push(("Authorization".into(), "Bearer not-the-token".into()));
    }
    probe("lab", Via::Direct(service), Expect::Private, r)
}

fn admin_without_token(rng: &mut StdRng) -> Probe {
    let (method, path) = *[
        ("GET", "/admin/config"),
        ("GET", "/admin/breakers"),
        ("GET", "/admin/chaos"),
        ("PUT", "/admin/chaos"),
        ("DELETE", "/admin/chaos"),
    ]
    .choose(rng)
    .expect("non-empty");
    let mut r = json_raw(method, path, "{\"faults\":[]}");
    if rng.random_bool(0.5) {
        r.headers
            .push(("Authorization".into(), "Bearer storefront".into()));
    }
    probe("admin", Via::Bff, Expect::Private, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_the_same_for_the_same_seed_and_covers_every_class() {
        let a = probes(7, 12);
        let b = probes(7, 12);
        assert_eq!(a.len(), 12 * CLASSES.len());
        let key = |p: &Probe| (p.class, p.raw.method.clone(), p.raw.target.clone());
        assert_eq!(
            a.iter().map(key).collect::<Vec<_>>(),
            b.iter().map(key).collect::<Vec<_>>()
        );
        for class in CLASSES {
            assert_eq!(a.iter().filter(|p| p.class == class).count(), 12);
        }
    }

    #[test]
    fn every_variant_of_a_class_is_drawn_at_least_once() {
        let plan = probes(1, 8);
        let traversal: Vec<_> = plan.iter().filter(|p| p.class == "traversal").collect();
        assert!(traversal.iter().any(|p| p.raw.target.contains("/lab/")));
        assert!(traversal.iter().any(|p| p.expect == Expect::Refused));
        let nul: Vec<_> = plan.iter().filter(|p| p.class == "nul").collect();
        assert!(nul.iter().any(|p| p.via == Via::Direct("payments")));
    }

    #[test]
    fn forged_tokens_have_three_parts() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..20 {
            assert_eq!(forged_jwt(&mut rng).split('.').count(), 3);
        }
    }
}
