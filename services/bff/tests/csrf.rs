//! The CSRF rules on cookie sessions: unsafe methods need the token, a
//! cross-site request is refused even a read, a bearer request needs none.

mod common;

use common::session::{env, sign_in, stored};

#[tokio::test]
async fn unsafe_methods_on_a_cookie_session_need_the_csrf_token() {
    let Some(env) = env(&[]).await else { return };
    // dave is staff: a catalog write is his to make once CSRF passes.
    let b = sign_in(&env, "dave").await;
    let hits = env.catalog.hits();
    let patch = |token: Option<&str>| {
        let mut r = env
            .bff
            .http
            .patch(env.bff.url("/api/catalog/products/1"))
            .header("cookie", b.cookie())
            .json(&serde_json::json!({"price_cents": 1}));
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        r.send()
    };
    let r = patch(None).await.unwrap();
    assert_eq!(r.status(), 403, "no token");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let mut wrong = b.csrf.clone();
    wrong.replace_range(0..1, if wrong.starts_with('0') { "1" } else { "0" });
    assert_eq!(
        patch(Some(&wrong)).await.unwrap().status(),
        403,
        "wrong token"
    );
    assert_eq!(
        patch(Some("short")).await.unwrap().status(),
        403,
        "short token"
    );
    let r = env
        .bff
        .http
        .delete(env.bff.url("/api/session"))
        .header("cookie", b.cookie())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "signing out needs it too");
    assert_eq!(
        env.catalog.hits(),
        hits,
        "nothing refused reached the upstream"
    );
    assert_eq!(
        patch(Some(&b.csrf)).await.unwrap().status(),
        200,
        "the right token"
    );
    assert_eq!(env.catalog.hits(), hits + 1);
}

#[tokio::test]
async fn a_cross_site_request_with_the_cookie_is_refused_even_a_read() {
    let Some(env) = env(&[]).await else { return };
    let b = sign_in(&env, "alice").await;
    let hits = env.catalog.hits();
    for (name, value) in [
        ("origin", "https://evil.test"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = env
            .bff
            .http
            .get(env.bff.url("/api/catalog/products/1"))
            .header("cookie", b.cookie())
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{name}: {value}");
    }
    // A cross-site sign-in (login CSRF) too.
    let r = env
        .bff
        .http
        .post(env.bff.url("/api/session"))
        .header("origin", "https://evil.test")
        .json(&serde_json::json!({"username": "alice", "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(env.catalog.hits(), hits);
    // Same origin: fine.
    let r = env
        .bff
        .http
        .get(env.bff.url("/api/catalog/products/1"))
        .header("cookie", b.cookie())
        .header("origin", env.bff.base.clone())
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_bearer_request_needs_no_csrf_token() {
    let Some(env) = env(&[]).await else { return };
    let b = sign_in(&env, "dave").await;
    let s = stored(&env, &b).await.unwrap();
    let r = env
        .bff
        .http
        .patch(env.bff.url("/api/catalog/products/1"))
        .bearer_auth(&s.access_token)
        .json(&serde_json::json!({"price_cents": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
