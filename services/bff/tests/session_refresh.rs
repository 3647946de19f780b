//! A session's refresh: before expiry exactly once under concurrency, and
//! a refresh identity refuses ends the session.

mod common;

use std::collections::HashSet;

use serde_json::Value;

use common::session::{env, sign_in, stored};

#[tokio::test]
async fn twenty_concurrent_requests_on_an_expiring_session_refresh_exactly_once() {
    let Some(env) = env(&[]).await else { return };
    // Signed in with 30 s left: inside the 60 s margin, so due at once.
    env.identity
        .inner
        .password_access_ttl
        .store(30, std::sync::atomic::Ordering::SeqCst);
    env.identity
        .inner
        .refresh_delay_ms
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let b = sign_in(&env, "alice").await;
    let before = stored(&env, &b).await.unwrap();
    let hits = env.catalog.hits();

    let requests = (0..20).map(|_| {
        let http = env.bff.http.clone();
        let url = env.bff.url("/api/catalog/products/1");
        let cookie = b.cookie();
        tokio::spawn(async move {
            let r = http.get(url).header("cookie", cookie).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or_default();
            (
                status,
                body["headers"]["authorization"].as_str().map(str::to_owned),
            )
        })
    });
    let results = futures::future::join_all(requests).await;
    let mut tokens = HashSet::new();
    for r in results {
        let (status, auth) = r.unwrap();
        assert_eq!(status, 200);
        tokens.insert(auth.unwrap());
    }
    let after = stored(&env, &b).await.unwrap();
    assert_eq!(
        env.identity.refresh_grants(),
        1,
        "exactly one refresh grant"
    );
    assert_eq!(env.identity.reuse_detected(), 0, "no reuse detected");
    assert_ne!(after.access_token, before.access_token);
    assert_ne!(after.refresh_token, before.refresh_token);
    assert_eq!(
        after.csrf_token, before.csrf_token,
        "the CSRF token survives"
    );
    assert_eq!(
        tokens,
        HashSet::from([format!("Bearer {}", after.access_token)]),
        "every request went up with the new token"
    );
    assert_eq!(env.catalog.hits(), hits + 20);

    // Fresh now: the next request refreshes nothing.
    let r = env
        .bff
        .http
        .get(env.bff.url("/api/catalog/products/1"))
        .header("cookie", b.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.identity.refresh_grants(), 1);
}

#[tokio::test]
async fn a_session_whose_refresh_identity_refuses_ends_with_401_and_a_cleared_cookie() {
    let Some(env) = env(&[]).await else { return };
    env.identity
        .inner
        .password_access_ttl
        .store(30, std::sync::atomic::Ordering::SeqCst);
    let b = sign_in(&env, "alice").await;
    env.identity.revoke_everything();
    let hits = env.catalog.hits();
    let r = env
        .bff
        .http
        .get(env.bff.url("/api/catalog/products/1"))
        .header("cookie", b.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(
        stored(&env, &b).await.is_none(),
        "the dead session is deleted"
    );
    assert_eq!(env.catalog.hits(), hits, "nothing reached the upstream");
}
