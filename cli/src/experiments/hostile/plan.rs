//! The hostile requests, by class, drawn from a seed: what an attacker
//! sends to a shop — encoded traversal, NUL bytes, overflowing numbers,
//! malformed and deeply nested JSON, huge bodies, odd methods, bad ids,
//! forged webhooks and tokens, lab and admin calls without the token.
//! Every one of them must be refused; `Private` ones must never reach a
//! private path. Pure: no I/O, so the plan is the same for the same seed.

mod bodies;
mod forgery;
mod paths;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::wire::Raw;
use bodies::*;
use forgery::*;
use paths::*;

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
