//! Refresh-token rotation and revocation: reuse revokes the family, one of
//! concurrent refreshes wins, revoked and expired access tokens are refused,
//! and the lab routes exist only when enabled.

mod common;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use common::{LAB_TOKEN, payload, spawn_app, str_of};

#[tokio::test]
async fn refresh_rotates_and_reusing_an_old_token_revokes_the_family() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let first = app.login("dave").await;
    let r1 = str_of(&first.body, "refresh_token").to_owned();
    let second = app.refresh(&r1).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let r2 = str_of(&second.body, "refresh_token").to_owned();
    assert_ne!(r1, r2);
    let sid = payload(str_of(&first.body, "access_token"))["sid"].clone();
    assert_eq!(payload(str_of(&second.body, "access_token"))["sid"], sid);

    let reused = app.refresh(&r1).await;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST);
    assert_eq!(reused.body["reason"], "reuse_detected");
    let successor = app.refresh(&r2).await;
    assert_eq!(successor.status, StatusCode::BAD_REQUEST);
    assert_eq!(successor.body["reason"], "family_revoked");
    let reason: String = sqlx::query_scalar(&format!(
        "SELECT revoked_reason FROM \"{}\".refresh_families WHERE id = $1::uuid",
        app.schema().name
    ))
    .bind(sid.as_str().unwrap())
    .fetch_one(&app.schema().admin)
    .await
    .unwrap();
    assert_eq!(reason, "reuse_detected");
    let unknown = app.refresh("not-a-token-we-issued").await;
    assert_eq!(unknown.body["reason"], "unknown_token");
    app.cleanup().await;
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_exactly_one_win() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let r1 = str_of(&app.login("alice").await.body, "refresh_token").to_owned();
    let (a, b) = tokio::join!(app.refresh(&r1), app.refresh(&r1));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "{} / {}", a.body, b.body);
    let winner = if a.status == StatusCode::OK { &a } else { &b };
    let after = app.refresh(str_of(&winner.body, "refresh_token")).await;
    assert_eq!(
        after.body["reason"], "family_revoked",
        "the race burned the family"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn a_revoked_access_token_is_denylisted_until_it_expires() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let login = app.login("bob").await;
    let token = str_of(&login.body, "access_token").to_owned();
    let jti = str_of(&login.body, "jti").to_owned();
    assert_eq!(app.userinfo(&token).await.status, StatusCode::OK);
    let revoked = app.post("/revoke", &json!({ "token": token })).await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(revoked.body["revoked"], true);
    assert_eq!(
        revoked.body["denylist_key"],
        format!("identity:revoked:{jti}")
    );
    let after = app.userinfo(&token).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.body["reason"], "revoked");

    let client = redis::Client::open(app.env.infra.redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("identity:revoked:{jti}"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(
        (290..=300).contains(&ttl),
        "TTL {ttl}: until the token's exp"
    );
    let recorded: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{}\".revoked_access_tokens WHERE jti = $1::uuid",
        app.schema().name
    ))
    .bind(&jti)
    .fetch_one(&app.schema().admin)
    .await
    .unwrap();
    assert_eq!(recorded, 1);
    let again = app.post("/revoke", &json!({ "token": "not.a.jwt" })).await;
    assert_eq!(
        (again.status, again.body["revoked"].clone()),
        (StatusCode::OK, json!(false))
    );
    app.cleanup().await;
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_family() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let refresh = str_of(&app.login("carol").await.body, "refresh_token").to_owned();
    let revoked = app.post("/revoke", &json!({ "token": refresh })).await;
    assert_eq!(revoked.body["revoked"], true);
    assert_eq!(app.refresh(&refresh).await.body["reason"], "family_revoked");
    app.cleanup().await;
}

#[tokio::test]
async fn an_expired_access_token_is_rejected_as_expired() {
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let login = app
        .send(
            app.http
                .post(format!("{}/token", app.base))
                .bearer_auth(LAB_TOKEN)
                .json(&json!({"grant_type": "password", "username": "alice", "password": "alice-password", "access_ttl_secs": 1})),
        )
        .await;
    assert_eq!(login.body["expires_in"], 1, "{}", login.body);
    let token = str_of(&login.body, "access_token").to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    let reply = loop {
        let reply = app.userinfo(&token).await;
        if reply.status != StatusCode::OK || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["reason"], "expired");
    app.cleanup().await;
}

#[tokio::test]
async fn lab_routes_exist_only_with_lab_endpoints_and_static_logins_do_not_rotate() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    assert_eq!(app.get("/lab/lease").await.status, StatusCode::NOT_FOUND);
    app.cleanup().await;
    let Some(app) = spawn_app(true).await else {
        return;
    };
    let lease = app
        .send(
            app.http
                .get(format!("{}/lab/lease", app.base))
                .bearer_auth(LAB_TOKEN),
        )
        .await;
    assert_eq!(lease.body["generation"], 1);
    assert!(lease.body["lease_id"].is_null());
    let rotate = app
        .send(
            app.http
                .post(format!("{}/lab/rotate", app.base))
                .bearer_auth(LAB_TOKEN),
        )
        .await;
    assert_eq!(rotate.status, StatusCode::CONFLICT);
    app.cleanup().await;
}
