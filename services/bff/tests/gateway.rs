//! The BFF over real HTTP in front of fake replicas, with real Redis.

mod common;

use std::time::{Duration, Instant};

use common::{Fake, spawn_bff, spawn_bff_on};
use reqwest::Method;
use serde_json::Value;
use storefront_kit::testing::until;

#[tokio::test]
async fn requests_are_routed_round_robin_and_headers_cross_in_both_directions() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let Some(bff) = spawn_bff(&[&a, &b], &[]).await else {
        return;
    };
    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = bff
            .http
            .get(bff.url("/api/catalog/products/7?x=1"))
            .header("x-session-id", "routing")
            .header("if-none-match", "\"v0\"")
            .header("x-request-id", "req-42")
            .header("cookie", "secret=1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["etag"], "\"v1\"");
        assert_eq!(r.headers()["x-cache"], "l1");
        assert_eq!(r.headers()["x-request-id"], "req-42");
        assert!(r.headers().contains_key("ratelimit"));
        assert!(!r.headers().contains_key("set-cookie"));
        seen.push(r.headers()["x-upstream"].to_str().unwrap().to_owned());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["uri"], "/products/7?x=1");
        assert_eq!(body["headers"]["if-none-match"], "\"v0\"");
        assert_eq!(body["headers"]["x-request-id"], "req-42");
        assert!(body["headers"].get("cookie").is_none(), "{body}");
    }
    seen.sort();
    assert_eq!(seen, ["catalog-1", "catalog-1", "catalog-2", "catalog-2"]);
    assert_eq!((a.hits(), b.hits()), (2, 2));
}

#[tokio::test]
async fn a_missing_request_id_is_generated_and_forwarded() {
    let a = Fake::start("a").await;
    let Some(bff) = spawn_bff(&[&a], &[]).await else {
        return;
    };
    let r = bff.get("/api/catalog/products", "rid").await;
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-request-id"], id.as_str());
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
}

#[tokio::test]
async fn unknown_services_and_private_paths_are_not_routed() {
    let a = Fake::start("a").await;
    let Some(bff) = spawn_bff(&[&a], &[]).await else {
        return;
    };
    assert_eq!(bff.get("/api/nope/x", "p").await.status(), 404);
    assert_eq!(bff.get("/api/catalog/metrics", "p").await.status(), 404);
    assert_eq!(a.hits(), 0);
}

#[tokio::test]
async fn an_empty_bucket_answers_429_with_retry_after_and_ratelimit_headers() {
    let a = Fake::start("a").await;
    let identity = common::identity::FakeIdentity::start().await;
    let extra = [
        ("RATE_LIMIT_CAPACITY", "3"),
        ("RATE_LIMIT_REFILL_PER_SEC", "1"),
        ("IDENTITY_URLS", identity.base.as_str()),
    ];
    let Some(bff) = spawn_bff(&[&a], &extra).await else {
        return;
    };
    let anonymous = || bff.http.get(bff.url("/api/catalog/products")).send();
    for _ in 0..3 {
        assert_eq!(anonymous().await.unwrap().status(), 200);
    }
    let refused = anonymous().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(refused.headers()["ratelimit-policy"], "\"session\";q=3;w=3");
    assert_eq!(refused.headers()["ratelimit"], "\"session\";r=0;t=1");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    // The upstream never saw the refused request; a signed-in user on the
    // same address has a bucket of their own.
    assert_eq!(a.hits(), 3);
    let alice = bff
        .http
        .get(bff.url("/api/catalog/products"))
        .bearer_auth(identity.access_token("alice", 300))
        .send()
        .await
        .unwrap();
    assert_eq!(alice.status(), 200);
    // After Retry-After, a token is there again (polled: no fixed sleep).
    let t = Instant::now();
    assert!(
        until(Duration::from_secs(3), || async {
            anonymous().await.unwrap().status() == 200
        })
        .await
    );
    assert!(
        t.elapsed() <= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn a_self_declared_session_id_is_no_bucket_of_its_own() {
    let a = Fake::start("a").await;
    let identity = common::identity::FakeIdentity::start().await;
    let extra = [
        ("RATE_LIMIT_CAPACITY", "3"),
        ("RATE_LIMIT_REFILL_PER_SEC", "1"),
        ("IDENTITY_URLS", identity.base.as_str()),
    ];
    let Some(bff) = spawn_bff(&[&a], &extra).await else {
        return;
    };
    // A new id per request used to be a new bucket per request: unlimited.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = bff
            .get("/api/catalog/products", &format!("fresh-{i}"))
            .await;
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "five ids, one address, a bucket of 3: {statuses:?}"
    );
    // Naming alice's user id as a session drains nobody's bucket but the
    // sender's: alice is still served.
    let alice = identity.access_token("alice", 300);
    let named = format!("user:{}", common::identity::USERS[0].0);
    for _ in 0..3 {
        let _ = bff
            .http
            .get(bff.url("/api/catalog/products"))
            .header("x-session-id", &named)
            .header("cookie", format!("session={named}"))
            .send()
            .await
            .unwrap();
    }
    let r = bff
        .http
        .get(bff.url("/api/catalog/products"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A malformed id is no longer an error: it is simply not read.
    assert_ne!(bff.get("/api/catalog/x", "not ok!").await.status(), 400);
}

#[tokio::test]
async fn admin_routes_need_the_token() {
    let a = Fake::start("a").await;
    let Some(bff) = spawn_bff(&[&a], &[]).await else {
        return;
    };
    for path in ["/admin/chaos", "/admin/breakers", "/admin/config"] {
        let none = bff.http.get(bff.url(path)).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        assert!(none.headers().contains_key("www-authenticate"));
        let wrong = bff
            .http
            .get(bff.url(path))
            .bearer_auth("guess")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        assert_eq!(
            bff.admin(Method::GET, path).send().await.unwrap().status(),
            200
        );
    }
    let put = bff
        .http
        .put(bff.url("/admin/chaos"))
        .json(&serde_json::json!({"faults": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 401);
    let config = bff.send(bff.admin(Method::GET, "/admin/config")).await.body;
    assert_eq!(config["rate_limit"]["capacity"], 200);
    assert_eq!(config["breaker"]["consecutive_failures"], 5);
}

#[tokio::test]
async fn chaos_requests_are_validated_and_listed_with_their_ttl() {
    let a = Fake::start("a").await;
    let Some(bff) = spawn_bff(&[&a], &[]).await else {
        return;
    };
    let bad = bff
        .admin(Method::PUT, "/admin/chaos")
        .json(&serde_json::json!({"faults": [{"target": "nope", "ttl_secs": 5}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let no_ttl = bff
        .admin(Method::PUT, "/admin/chaos")
        .json(&serde_json::json!({"faults": [{"target": "catalog"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_ttl.status(), 422);
    bff.fail("catalog", 500).await;
    let shown: Value = bff
        .admin(Method::GET, "/admin/chaos")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["seed"], 1);
    assert_eq!(shown["faults"][0]["target"], "catalog");
    assert!(shown["faults"][0]["expires_in_secs"].as_f64().unwrap() > 50.0);
    let r = bff.get("/api/catalog/x", "c").await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["x-chaos"], "injected");
    let cleared: Value = bff
        .admin(Method::DELETE, "/admin/chaos")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cleared["faults"].as_array().unwrap().len(), 0);
    assert_eq!(bff.get("/api/catalog/x", "c").await.status(), 200);
    assert_eq!(a.hits(), 1, "injected errors never reach the replica");
}

#[tokio::test]
async fn a_failing_replica_opens_its_breaker_and_reads_keep_succeeding() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let extra = [
        ("BREAKER_CONSECUTIVE_FAILURES", "3"),
        ("BREAKER_OPEN_MS", "60000"),
    ];
    let Some(bff) = spawn_bff(&[&a, &b], &extra).await else {
        return;
    };
    b.status.store(503, std::sync::atomic::Ordering::SeqCst);
    for i in 0..20 {
        let r = bff.get("/api/catalog/products/1", "breaker").await;
        assert_eq!(
            r.status(),
            200,
            "read {i} was retried on the healthy replica"
        );
    }
    let view = bff.breaker("catalog-2").await;
    assert_eq!(view["state"], "open", "{view}");
    assert_eq!(view["counters"]["failures"], 3, "{view}");
    assert_eq!(b.hits(), 3, "no call after the breaker opened");
    // Pinned to the open replica: 503 at once, with Retry-After, not sent.
    let t = Instant::now();
    let r = bff
        .http
        .get(bff.url("/api/catalog/products/1"))
        .header("x-session-id", "breaker")
        .header("x-lab-upstream", "catalog-2")
        .header("x-lab-token", common::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(t.elapsed() < Duration::from_millis(200));
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    assert_eq!(b.hits(), 3);
    let transitions = bff
        .counter("bff_breaker_transitions_total", "upstream=\"catalog-2\"")
        .await;
    assert!(transitions >= 1.0);
}

#[tokio::test]
async fn the_breaker_half_opens_and_closes_once_the_replica_recovers() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let extra = [
        ("BREAKER_CONSECUTIVE_FAILURES", "2"),
        ("BREAKER_OPEN_MS", "300"),
    ];
    let Some(bff) = spawn_bff(&[&a, &b], &extra).await else {
        return;
    };
    bff.fail("catalog-2", 503).await;
    for _ in 0..6 {
        assert_eq!(bff.get("/api/catalog/x", "hc").await.status(), 200);
    }
    assert_eq!(bff.breaker("catalog-2").await["state"], "open");
    bff.admin(Method::DELETE, "/admin/chaos")
        .send()
        .await
        .unwrap();
    let closed = until(Duration::from_secs(3), || async {
        bff.get("/api/catalog/x", "hc").await;
        bff.breaker("catalog-2").await["state"] == "closed"
    })
    .await;
    assert!(closed, "{}", bff.breaker("catalog-2").await);
    let view = bff.breaker("catalog-2").await;
    assert!(
        view["counters"]["sent_probes"].as_u64().unwrap() >= 1,
        "{view}"
    );
}

#[tokio::test]
async fn only_idempotent_requests_are_retried() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    // Reserving stock needs a customer.
    let identity = common::identity::FakeIdentity::start().await;
    let Some(bff) = spawn_bff(&[&a, &b], &[("IDENTITY_URLS", &identity.base)]).await else {
        return;
    };
    let alice = identity.access_token("alice", 300);
    a.status.store(503, std::sync::atomic::Ordering::SeqCst);
    b.status.store(503, std::sync::atomic::Ordering::SeqCst);
    let post = bff
        .http
        .post(bff.url("/api/catalog/reservations"))
        .header("x-session-id", "retry")
        .bearer_auth(&alice)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 503);
    assert_eq!(a.hits() + b.hits(), 1, "a POST without a key is sent once");
    let keyed = bff
        .http
        .post(bff.url("/api/catalog/reservations"))
        .header("x-session-id", "retry")
        .bearer_auth(&alice)
        .header("idempotency-key", "k-1")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 503);
    assert_eq!(a.hits() + b.hits(), 4, "a keyed POST gets all 3 attempts");
    let body: Value = keyed.json().await.unwrap();
    assert_eq!(body["headers"]["idempotency-key"], "k-1");
}

#[tokio::test]
async fn an_unreachable_redis_fails_open_or_closed_as_configured() {
    if common::redis_url().is_none() {
        return;
    }
    let a = Fake::start("a").await;
    // Nothing listens on port 1.
    let dead = "redis://127.0.0.1:1/";
    let open = spawn_bff_on(dead, &[&a], &[("RATE_LIMIT_REDIS_FAILURE", "open")]).await;
    assert_eq!(open.get("/api/catalog/x", "r").await.status(), 200);
    assert!(
        open.counter("bff_ratelimit_decisions_total", "decision=\"fail_open\"")
            .await
            >= 1.0
    );
    let closed = spawn_bff_on(dead, &[&a], &[("RATE_LIMIT_REDIS_FAILURE", "closed")]).await;
    let r = closed.get("/api/catalog/x", "r").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn retries_stop_when_the_budget_is_spent() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let extra = [
        // Never open, so every request reaches a replica and may retry.
        ("BREAKER_CONSECUTIVE_FAILURES", "100000"),
        ("BREAKER_MIN_CALLS", "100000"),
        // 1 retry/s over the 10 s window, nothing proportional: 10 retries.
        ("RETRY_BUDGET_RATIO", "0"),
        ("RETRY_BUDGET_MIN_PER_SEC", "1"),
    ];
    let Some(bff) = spawn_bff(&[&a, &b], &extra).await else {
        return;
    };
    a.status.store(503, std::sync::atomic::Ordering::SeqCst);
    b.status.store(503, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..30 {
        assert_eq!(bff.get("/api/catalog/x", "budget").await.status(), 503);
    }
    // Without the budget: 30 × 3 attempts = 90. With it: 30 + 10.
    assert_eq!(a.hits() + b.hits(), 40);
    let spent = bff
        .counter("bff_retries_total", "result=\"budget_exhausted\"")
        .await;
    assert!(spent >= 20.0, "{spent}");
}
