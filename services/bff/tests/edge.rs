//! Hostile input at the BFF (issue 11, items 2, 3, 8 and 9): what a client
//! sends can neither reach an upstream's private paths nor count against an
//! upstream's breaker, and every error the BFF itself answers is
//! problem+json. Real BFF over real HTTP, real Redis, fake replicas that
//! count what reaches them.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Fake, spawn_bff};
use reqwest::Method;
use serde_json::Value;

/// The breaker of `instance` is closed and has counted no failure.
async fn untouched(bff: &common::TestBff, instance: &str) {
    let view = bff.breaker(instance).await;
    assert_eq!(view["state"], "closed", "{view}");
    assert_eq!(view["counters"]["failures"], 0, "{view}");
    assert_eq!(view["counters"]["opened"], 0, "{view}");
}

#[tokio::test]
async fn an_encoded_service_name_is_refused_every_time_and_no_breaker_opens() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let Some(bff) = spawn_bff(&[&a, &b], &[]).await else {
        return;
    };
    for i in 0..10 {
        let r = bff.raw("GET", "/api/c%61talog/products/1", "", b"").await;
        assert!((400..500).contains(&r.status), "request {i}: {r:?}");
        assert!(r.is_problem_json(), "request {i}: {r:?}");
    }
    assert_eq!(a.hits() + b.hits(), 0, "no upstream saw a request");
    untouched(&bff, "catalog-1").await;
    untouched(&bff, "catalog-2").await;
    // Honest users are served as before.
    assert_eq!(
        bff.get("/api/catalog/products/1", "honest").await.status(),
        200
    );
}

#[tokio::test]
async fn encoded_traversals_are_refused_before_any_upstream_is_called() {
    let a = Fake::start("a").await;
    let Some(bff) = spawn_bff(&[&a], &[]).await else {
        return;
    };
    for target in [
        "/api/catalog/%2e%2e/metrics",
        "/api/catalog/%2E%2E/metrics",
        "/api/catalog/.%2e/metrics",
        "/api/catalog/%2e./ready",
        "/api/catalog/products/%2e%2e/%2e%2e/metrics",
        "/api/catalog/..\\metrics",
        "/api/catalog/products\\..\\..\\health",
        "/api/catalog/%2e%2e%2fmetrics",
        "/api/catalog/%2e%2e%2Fhealth",
        "/api/catalog/..%5cmetrics",
        "/api/catalog/..%5Cready",
        "/api/catalog/../metrics",
        "/api/catalog/./metrics",
        "/api/catalog//metrics",
        "/api/catalog/%252e%252e/metrics",
        "/api/catalog/%zz",
        "/api/catalog/%ff",
        "/api/catalog/products/%00",
    ] {
        let r = bff.raw("GET", target, "", b"").await;
        assert!((400..500).contains(&r.status), "{target}: {r:?}");
        assert!(r.is_problem_json(), "{target}: {r:?}");
    }
    assert_eq!(a.hits(), 0, "the upstream saw no request");
    untouched(&bff, "catalog").await;
}

#[tokio::test]
async fn operational_and_lab_paths_are_not_found_in_any_spelling() {
    let a = Fake::start("a").await;
    let Some(bff) = spawn_bff(&[&a], &[]).await else {
        return;
    };
    for target in [
        "/api/catalog/metrics",
        "/api/catalog/health",
        "/api/catalog/ready",
        "/api/catalog/lab/sign",
        "/api/catalog/lab/naive/claims",
        "/api/catalog/lab",
        "/api/catalog/%6cab/sign",
        "/api/catalog/LAB/sign",
        "/api/catalog/%6Detrics",
    ] {
        for method in ["GET", "POST"] {
            let r = bff.raw(method, target, "", b"").await;
            assert_eq!(r.status, 404, "{method} {target}: {r:?}");
            assert!(r.is_problem_json(), "{method} {target}: {r:?}");
        }
    }
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn the_upstream_receives_exactly_the_segments_that_were_checked() {
    let a = Fake::start("a").await;
    let Some(bff) = spawn_bff(&[&a], &[]).await else {
        return;
    };
    let r = bff
        .raw(
            "GET",
            "/api/catalog/products/a%20b%3Ac/x.y?q=%41&z=1",
            "",
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["uri"], "/products/a%20b%3Ac/x.y?q=%41&z=1");
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn upstream_client_errors_never_open_a_breaker_and_are_never_retried() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let extra = [("BREAKER_CONSECUTIVE_FAILURES", "2")];
    let Some(bff) = spawn_bff(&[&a, &b], &extra).await else {
        return;
    };
    for status in [400, 404, 409, 412, 422, 429] {
        a.status.store(status, Ordering::SeqCst);
        b.status.store(status, Ordering::SeqCst);
        let before = a.hits() + b.hits();
        for _ in 0..5 {
            let r = bff.get("/api/catalog/products/1", "four").await;
            assert_eq!(r.status(), status);
        }
        assert_eq!(a.hits() + b.hits() - before, 5, "{status} was retried");
    }
    untouched(&bff, "catalog-1").await;
    untouched(&bff, "catalog-2").await;
}

#[tokio::test]
async fn an_upstream_500_counts_against_the_replica_but_is_never_retried() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let Some(bff) = spawn_bff(&[&a, &b], &[]).await else {
        return;
    };
    a.status.store(500, Ordering::SeqCst);
    b.status.store(500, Ordering::SeqCst);
    for _ in 0..4 {
        assert_eq!(
            bff.get("/api/catalog/products/1", "five").await.status(),
            500
        );
    }
    // One attempt per request: a 500 is the replica's answer to this
    // request, and the other replica would give the same.
    assert_eq!(a.hits() + b.hits(), 4);
    let failures = bff.breaker("catalog-1").await["counters"]["failures"]
        .as_u64()
        .unwrap()
        + bff.breaker("catalog-2").await["counters"]["failures"]
            .as_u64()
            .unwrap();
    assert_eq!(failures, 4);
}

#[tokio::test]
async fn a_nul_byte_in_the_query_or_a_json_body_never_reaches_an_upstream() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let Some(bff) = spawn_bff(&[&a, &b], &[]).await else {
        return;
    };
    for _ in 0..5 {
        let r = bff
            .raw("GET", "/api/catalog/products?category=%00", "", b"")
            .await;
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.is_problem_json(), "{r:?}");
        let body = br#"{"order_id":"o\u0000","note":"x"}"#;
        let r = bff
            .raw(
                "POST",
                "/api/catalog/claims",
                "content-type: application/json\r\nidempotency-key: k1\r\n",
                body,
            )
            .await;
        assert_eq!(r.status, 400, "{r:?}");
        assert!(r.is_problem_json(), "{r:?}");
    }
    assert_eq!(a.hits() + b.hits(), 0);
    untouched(&bff, "catalog-1").await;
    untouched(&bff, "catalog-2").await;
}

#[tokio::test]
async fn every_error_the_bff_answers_itself_is_problem_json() {
    // Nothing listens on a port we bound and released: 502 from a dead
    // replica (identity's: its reads are public, so no sign-in is needed).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let a = Fake::start("a").await;
    let extra = [
        ("IDENTITY_URLS", dead.as_str()),
        ("RATE_LIMIT_CAPACITY", "6"),
        ("RATE_LIMIT_REFILL_PER_SEC", "1"),
        ("BREAKER_CONSECUTIVE_FAILURES", "1"),
        ("BREAKER_OPEN_MS", "60000"),
    ];
    let Some(bff) = spawn_bff(&[&a], &extra).await else {
        return;
    };
    let mut seen = Vec::new();
    let mut check = |what: &str, r: common::RawResponse, status: u16| {
        assert_eq!(r.status, status, "{what}: {r:?}");
        assert!(r.is_problem_json(), "{what}: {r:?}");
        seen.push(status);
    };
    // Anonymous: every /api request below shares this address's bucket of 6.
    let s = |_: u32| String::new();
    check("no route", bff.raw("GET", "/nowhere", "", b"").await, 404);
    check(
        "no service",
        bff.raw("GET", "/api/nope/x", &s(1), b"").await,
        404,
    );
    check(
        "bad path",
        bff.raw("GET", "/api/catalog/%ff", &s(2), b"").await,
        400,
    );
    check("method", bff.raw("DELETE", "/health", "", b"").await, 405);
    check("admin", bff.raw("GET", "/admin/chaos", "", b"").await, 401);
    // Refused on its declared length, before the body is read.
    let big = format!("{}content-length: {}\r\n", s(3), 2 * 1024 * 1024);
    check(
        "too large",
        bff.raw("POST", "/api/catalog/x", &big, b"").await,
        413,
    );
    // The dead replica: a 502, then its breaker is open: a 503.
    check(
        "unreachable",
        bff.raw("GET", "/api/identity/x", &s(4), b"").await,
        502,
    );
    check(
        "circuit open",
        bff.raw("GET", "/api/identity/x", &s(5), b"").await,
        503,
    );
    let many: String = (0..80).map(|i| format!("x-h{i}: v\r\n")).collect();
    check(
        "many headers",
        bff.raw("GET", "/api/catalog/x", &many, b"").await,
        431,
    );
    // The session routes and an unknown path refuse them too.
    check(
        "many headers, session",
        bff.raw("GET", "/api/session", &many, b"").await,
        431,
    );
    check(
        "many headers, no route",
        bff.raw("GET", "/nowhere", &many, b"").await,
        431,
    );
    let big = format!("cookie: c={}\r\n", "a".repeat(40 * 1024));
    check(
        "big headers",
        bff.raw("GET", "/admin/chaos", &big, b"").await,
        431,
    );
    // Drain the address's bucket (bounded), then the refusal.
    for _ in 0..20 {
        if bff.raw("GET", "/api/nope/x", "", b"").await.status == 429 {
            break;
        }
    }
    check(
        "rate limited",
        bff.raw("GET", "/api/nope/x", "", b"").await,
        429,
    );
    assert_eq!(a.hits(), 0);
    assert_eq!(seen.len(), 13);
    let admin = bff
        .admin(Method::GET, "/admin/breakers")
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
}

/// A connection to the BFF with `head` written and nothing more; returns
/// what the BFF sends before closing it, and how long that took.
async fn held_open(bff: &common::TestBff, head: &str) -> (String, Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = bff.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    // The kit's deadlines are 10 s; past 20 s the BFF is holding the
    // connection for the client.
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("the BFF closed the connection within 20 s")
        .ok();
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let a = Fake::start("a").await;
    let Some(bff) = spawn_bff(&[&a], &[]).await else {
        return;
    };
    let (answer, took) = held_open(&bff, "GET /api/catalog/x HTTP/1.1\r\nhost: x\r\n").await;
    assert!(took >= Duration::from_secs(5), "{took:?}");
    assert!(!answer.starts_with("HTTP/1.1 2"), "{answer}");
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn a_body_that_never_arrives_is_a_408_problem_and_never_forwarded() {
    let a = Fake::start("a").await;
    let Some(bff) = spawn_bff(&[&a], &[]).await else {
        return;
    };
    let head = "POST /api/catalog/x HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\":";
    let (answer, _) = held_open(&bff, head).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{answer}"
    );
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn pinning_a_replica_needs_the_admin_token() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let Some(bff) = spawn_bff(&[&a, &b], &[]).await else {
        return;
    };
    let pinned = |token: Option<&str>| {
        let mut r = bff
            .http
            .get(bff.url("/api/catalog/products/1"))
            .header("x-session-id", "pin")
            .header("x-lab-upstream", "catalog-2");
        if let Some(t) = token {
            r = r.header("x-lab-token", t);
        }
        r.send()
    };
    for token in [None, Some("guess")] {
        let r = pinned(token).await.unwrap();
        assert_eq!(r.status(), 401, "{token:?}");
        assert_eq!(
            r.headers()["content-type"],
            storefront_kit::error::PROBLEM_JSON
        );
    }
    assert_eq!(a.hits() + b.hits(), 0);
    for _ in 0..3 {
        let r = pinned(Some(common::TOKEN)).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-upstream"], "catalog-2");
        let body: Value = r.json().await.unwrap();
        assert!(body["headers"].get("x-lab-token").is_none(), "{body}");
    }
    assert_eq!((a.hits(), b.hits()), (0, 3));
}
