//! Probes with hostile bodies and parameters: NUL bytes, overflowing
//! numbers, malformed, deeply nested, huge and non-UTF-8 JSON.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use serde_json::json;

use super::forgery::{hex64, unix_now};
use super::{Expect, Probe, Via, either, json_raw, probe, raw};
use crate::experiments::hostile::wire::Raw;

// --- nul --------------------------------------------------------------------

pub(super) fn nul_query(rng: &mut StdRng) -> Probe {
    let q = ["%00", "a%00b", "%00%00", "coffee%00"]
        .choose(rng)
        .expect("non-empty");
    let (via, path) = either(rng, "catalog", &format!("/products?category={q}"));
    probe("nul", via, Expect::Refused, raw("GET", path))
}

pub(super) fn claim_body(order_id: &str, note: &str) -> String {
    json!({"order_id": order_id, "customer_id": "cust-hostile", "reason": "damaged",
           "amount_cents": 100, "note": note})
    .to_string()
}

pub(super) fn nul_claim(rng: &mut StdRng) -> Probe {
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

pub(super) fn nul_username(rng: &mut StdRng) -> Probe {
    let body = json!({"grant_type": "password", "username": "al\u{0}ice", "password": "x"});
    let (via, path) = either(rng, "identity", "/token");
    probe(
        "nul",
        via,
        Expect::Refused,
        json_raw("POST", path, body.to_string()),
    )
}

pub(super) fn checkout_body(
    product_id: serde_json::Value,
    quantity: serde_json::Value,
    card: &str,
) -> String {
    json!({"items": [{"product_id": product_id, "quantity": quantity}],
           "card_number": card, "provider": "stripe"})
    .to_string()
}

pub(super) fn checkout_raw(rng: &mut StdRng, body: String) -> (Via, Raw) {
    let (via, path) = either(rng, "checkout", "/checkout");
    let mut r = json_raw("POST", path, body);
    r.headers.push((
        "Idempotency-Key".into(),
        format!("hostile-{}", rng.random::<u64>()),
    ));
    (via, r)
}

pub(super) fn nul_checkout(rng: &mut StdRng) -> Probe {
    let body = checkout_body(json!(1), json!(1), "4242\u{0}424242424242");
    let (via, r) = checkout_raw(rng, body);
    probe("nul", via, Expect::Refused, r)
}

pub(super) fn nul_webhook(rng: &mut StdRng) -> Probe {
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

pub(super) fn overflow_ids(rng: &mut StdRng) -> Probe {
    let id = [json!(0), json!(-1), json!(i64::MAX), json!(i64::MIN)]
        .choose(rng)
        .expect("non-empty")
        .clone();
    let (via, r) = checkout_raw(rng, checkout_body(id, json!(1), "4242424242424242"));
    probe("overflow", via, Expect::Refused, r)
}

pub(super) fn overflow_quantity(rng: &mut StdRng) -> Probe {
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

pub(super) fn overflow_stock_patch(rng: &mut StdRng) -> Probe {
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
pub(super) fn json_endpoint(rng: &mut StdRng, body: Vec<u8>) -> (Via, Raw) {
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

pub(super) fn truncated_json(rng: &mut StdRng) -> Probe {
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

pub(super) fn nested_json(rng: &mut StdRng) -> Probe {
    let depth = rng.random_range(1_000..=20_000);
    let body = if rng.random_bool(0.5) {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    } else {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    };
    let (via, r) = json_endpoint(rng, body.into_bytes());
    probe("malformed", via, Expect::Refused, r)
}

pub(super) fn huge_body(rng: &mut StdRng) -> Probe {
    let size = rng.random_range(1_100_000..=2_500_000);
    let body = format!("{{\"note\":\"{}\"}}", "x".repeat(size));
    let (via, r) = json_endpoint(rng, body.into_bytes());
    probe("malformed", via, Expect::Refused, r)
}

pub(super) fn wrong_types(rng: &mut StdRng) -> Probe {
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

pub(super) fn not_utf8(rng: &mut StdRng) -> Probe {
    let body = b"{\"order_id\":\"\xff\xfe\xfd\",\"note\":\"\xc3\x28\"}".to_vec();
    let (via, r) = json_endpoint(rng, body);
    probe("malformed", via, Expect::Refused, r)
}
