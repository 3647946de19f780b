//! Probes at paths: encoded traversal towards private paths, odd methods,
//! bad ids, and lab and admin calls without the token.

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use super::{Expect, Probe, SERVICES_BEHIND_BFF, Via, either, json_raw, probe, raw};

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

pub(super) fn traversal_dots(rng: &mut StdRng) -> Probe {
    let svc = SERVICES_BEHIND_BFF.choose(rng).expect("non-empty");
    let dots = DOTS.choose(rng).expect("non-empty");
    let private = PRIVATE.choose(rng).expect("non-empty");
    let depth = rng.random_range(1..=2);
    let path = format!("/api/{svc}/{}{private}", format!("{dots}/").repeat(depth));
    probe("traversal", Via::Bff, Expect::Private, raw("GET", path))
}

pub(super) fn traversal_private(rng: &mut StdRng) -> Probe {
    let svc = SERVICES_BEHIND_BFF.choose(rng).expect("non-empty");
    let private = ["metrics", "ready", "health", "%6detrics", "metrics%3f"]
        .choose(rng)
        .expect("non-empty");
    let path = format!("/api/{svc}/{private}");
    probe("traversal", Via::Bff, Expect::Private, raw("GET", path))
}

pub(super) fn traversal_lab(rng: &mut StdRng) -> Probe {
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

pub(super) fn encoded_service(rng: &mut StdRng) -> Probe {
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

// --- methods and ids ----------------------------------------------------------

pub(super) fn odd_method(rng: &mut StdRng) -> Probe {
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

pub(super) fn bad_id(rng: &mut StdRng) -> Probe {
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

// --- lab, admin --------------------------------------------------------------

pub(super) fn lab_without_token(rng: &mut StdRng) -> Probe {
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

pub(super) fn admin_without_token(rng: &mut StdRng) -> Probe {
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
