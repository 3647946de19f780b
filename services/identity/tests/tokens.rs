//! The token endpoint, JWKS and userinfo over real HTTP: what a password
//! grant issues, how malformed requests are refused, and that the published
//! key verifies what is issued.

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{payload, spawn_app, str_of};

#[tokio::test]
async fn ready_reports_postgres_and_redis_ok() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app.get("/ready").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["checks"]["postgres"]["status"], "ok");
    assert_eq!(reply.body["checks"]["redis"]["status"], "ok");
    app.cleanup().await;
}

#[tokio::test]
async fn password_grant_issues_a_short_lived_jwt_and_a_refresh_token() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app.login("alice").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 300);
    let claims = payload(str_of(&reply.body, "access_token"));
    assert_eq!(claims["sub"], "00000000-0000-4000-8000-00000000a11c");
    assert_eq!(claims["name"], "alice");
    assert_eq!(claims["iss"], "storefront-identity");
    assert_eq!(claims["aud"], "storefront");
    assert_eq!(claims["jti"], reply.body["jti"]);
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    assert_eq!(str_of(&reply.body, "refresh_token").len(), 43);
    app.cleanup().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_invalid_grant() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let wrong = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": "alice", "password": "bob-password"}),
        )
        .await;
    let unknown = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": "mallory", "password": "x"}),
        )
        .await;
    for reply in [&wrong, &unknown] {
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(reply.body["error"], "invalid_grant");
        assert_eq!(reply.body["reason"], "bad_credentials");
    }
    assert_eq!(wrong.body, unknown.body, "no user enumeration");
    app.cleanup().await;
}

#[tokio::test]
async fn malformed_token_requests_are_400_and_say_why() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let reply = app.post("/token", &json!({"grant_type": "magic"})).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"], "unsupported_grant_type");
    let reply = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": "alice"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(str_of(&reply.body, "detail").contains("password is required"));
    let reply = app.post("/token", &json!({})).await;
    assert_eq!(reply.body["error"], "invalid_request");
    let reply = app
        .post(
            "/token",
            &json!({"grant_type": "password", "username": "alice", "password": "alice-password", "access_ttl_secs": 1}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "lab-only parameter");
    assert!(str_of(&reply.body, "detail").contains("lab-only"));
    app.cleanup().await;
}

#[tokio::test]
async fn jwks_publishes_the_key_that_verifies_issued_tokens() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.headers["cache-control"], "public, max-age=300");
    let key = &jwks.body["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let token = app.login("bob").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    // What the BFF does: pick the key by `kid`, verify locally.
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());
    let decoding = jsonwebtoken::DecodingKey::from_ed_components(str_of(key, "x")).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["storefront"]);
    validation.set_issuer(&["storefront-identity"]);
    let data = jsonwebtoken::decode::<Value>(&token, &decoding, &validation).unwrap();
    assert_eq!(data.claims["name"], "bob");
    app.cleanup().await;
}

#[tokio::test]
async fn userinfo_answers_the_bearer_and_401s_without_a_usable_token() {
    let Some(app) = spawn_app(false).await else {
        return;
    };
    let token = app.login("carol").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = app.userinfo(&token).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "carol");
    assert_eq!(me.body["display_name"], "Carol Example");
    let missing = app.get("/userinfo").await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        missing.headers["www-authenticate"],
        r#"Bearer realm="storefront""#
    );
    assert_eq!(missing.body["reason"], "missing");
    let tampered = format!("{}x", &token[..token.len() - 1]);
    let invalid = app.userinfo(&tampered).await;
    assert_eq!(invalid.status, StatusCode::UNAUTHORIZED);
    assert_eq!(invalid.body["reason"], "invalid");
    assert!(
        invalid.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );
    app.cleanup().await;
}
