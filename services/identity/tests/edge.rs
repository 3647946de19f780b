//! Hostile and degraded input (issue 11): NUL in a username, lab routes
//! without the lab token, roles through refresh, and a dead Redis.

mod common;

use reqwest::StatusCode;
use serde_json::json;

use common::{LAB_TOKEN, is_problem, payload, spawn_app, spawn_app_with, str_of};

#[tokio::test]
async fn a_username_with_nul_is_refused_as_a_problem_before_any_query() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": "alice\u{0}", "password": "x"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(is_problem(&reply));
    let long = "a".repeat(257);
    let reply = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": long, "password": "x"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(str_of(&reply.body, "detail").contains("longer than 256"));
    app.cleanup().await;
}

#[tokio::test]
async fn lab_routes_and_the_lab_ttl_parameter_refuse_anonymous_callers_with_401() {
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let anonymous = app.get("/lab/lease").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(is_problem(&anonymous));
    let wrong = app
        .send(
            app.http
                .put(format!("{}/lab/rotation-mode", app.base))
                .bearer_auth("guess")
                .json(&json!({"naive": true})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let body = json!({"grant_type": "password", "username": "bob", "password": "bob-password", "access_ttl_secs": 1});
    let anonymous = app.post("/token", &body).await;
    assert_eq!(
        anonymous.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        anonymous.body
    );
    assert!(is_problem(&anonymous));
    let wrong = app
        .send(
            app.http
                .post(format!("{}/token", app.base))
                .bearer_auth("guess")
                .json(&body),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let admin = app
        .send(
            app.http
                .post(format!("{}/token", app.base))
                .bearer_auth(LAB_TOKEN)
                .json(&body),
        )
        .await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);
    assert_eq!(admin.body["expires_in"], 1);
    app.cleanup().await;
}

#[tokio::test]
async fn access_tokens_and_userinfo_carry_the_user_s_roles_through_refresh() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    for (user, roles) in [
        ("alice", json!(["customer"])),
        ("carol", json!(["customer"])),
        ("dave", json!(["staff"])),
        ("erin", json!(["customer"])),
        ("heidi", json!(["customer"])),
    ] {
        let login = app.login(user).await;
        assert_eq!(login.status, StatusCode::OK, "{user}: {}", login.body);
        let claims = payload(str_of(&login.body, "access_token"));
        assert_eq!(claims["roles"], roles, "{user}");
        assert_eq!(
            (claims["iss"].as_str(), claims["aud"].as_str()),
            (Some("storefront-identity"), Some("storefront"))
        );
        let me = app.userinfo(str_of(&login.body, "access_token")).await;
        assert_eq!(me.body["roles"], roles, "{user}");
        let refreshed = app.refresh(str_of(&login.body, "refresh_token")).await;
        assert_eq!(
            payload(str_of(&refreshed.body, "access_token"))["roles"],
            roles
        );
    }
    // A role granted shows at the next refresh.
    let login = app.login("bob").await;
    sqlx::query(&format!(
        "UPDATE \"{}\".users SET roles = ARRAY['customer','staff'] WHERE username = 'bob'",
        app.schema().name
    ))
    .execute(&app.schema().admin)
    .await
    .unwrap();
    let refreshed = app.refresh(str_of(&login.body, "refresh_token")).await;
    assert_eq!(
        payload(str_of(&refreshed.body, "access_token"))["roles"],
        json!(["customer", "staff"])
    );
    let unknown_role = sqlx::query(&format!(
        "UPDATE \"{}\".users SET roles = ARRAY['root'] WHERE username = 'bob'",
        app.schema().name
    ))
    .execute(&app.schema().admin)
    .await;
    assert!(unknown_role.is_err(), "the role set is closed");
    app.cleanup().await;
}

#[tokio::test]
async fn without_redis_a_password_grant_is_503_and_no_password_is_checked_uncounted() {
    let Some(app) = spawn_app_with(false, &[("REDIS_URL", "redis://127.0.0.1:1/")]).await else {
        return;
    };
    let reply = app.login("alice").await;
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        reply.body
    );
    assert!(is_problem(&reply));
    let families: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".refresh_families",
        app.schema().name
    ))
    .fetch_one(&app.schema().admin)
    .await
    .unwrap();
    assert_eq!(families, 0, "nothing was written");
    app.cleanup().await;
}
