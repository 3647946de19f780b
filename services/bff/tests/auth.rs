//! Bearer tokens at the edge, on a real BFF with its denylist in real Redis:
//! a token identity signed passes and its verified identity reaches the
//! upstream; forged, expired and revoked tokens are 401 and reach nothing;
//! a client can't claim an identity by header; a user has one bucket
//! however many session ids they invent.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use common::{Fake, spawn_bff};

const KID: &str = "test-kid";
const ALICE: &str = "00000000-0000-4000-8000-00000000a11c";

struct Issuer {
    encoding: EncodingKey,
    /// Base URL of the fake identity serving the JWKS.
    base: String,
}

fn key(seed: u8) -> (EncodingKey, String) {
    let sk = SigningKey::from_bytes(&[seed; 32]);
    let der = sk.to_pkcs8_der().unwrap();
    (
        EncodingKey::from_ed_der(der.as_bytes()),
        B64.encode(sk.verifying_key().to_bytes()),
    )
}

/// A fake identity that publishes one Ed25519 key.
async fn issuer() -> Issuer {
    let (encoding, x) = key(11);
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": KID, "x": x}]});
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let j = jwks.clone();
            async move { axum::Json(j) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Issuer { encoding, base }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(exp_in: i64, jti: &str) -> Value {
    json!({"iss": "storefront-identity", "aud": "storefront", "sub": ALICE, "name": "alice",
           "roles": ["customer"], "jti": jti, "sid": uuid::Uuid::new_v4(),
           "iat": now(), "exp": now() + exp_in})
}

fn sign(key: &EncodingKey, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some(KID.into());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

#[tokio::test]
async fn a_valid_token_passes_with_its_identity_and_bad_ones_reach_nothing() {
    let catalog = Fake::start("catalog-1").await;
    let identity = issuer().await;
    let Some(bff) = spawn_bff(&[&catalog], &[("IDENTITY_URLS", &identity.base)]).await else {
        return;
    };
    let jti = uuid::Uuid::new_v4().to_string();
    let good = sign(&identity.encoding, &claims(300, &jti));

    // Valid: the upstream sees the verified identity and the token.
    let r = bff
        .http
        .get(bff.url("/api/catalog/products/1"))
        .bearer_auth(&good)
        .header("x-user-roles", "staff")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(echoed["headers"]["x-user-id"], ALICE);
    assert_eq!(echoed["headers"]["x-user-roles"], "customer", "{echoed}");
    assert_eq!(echoed["headers"]["authorization"], format!("Bearer {good}"));

    // Anonymous: a client's own identity headers are dropped.
    let r = bff
        .http
        .get(bff.url("/api/catalog/products/1"))
        .header("x-user-id", ALICE)
        .header("x-user-roles", "staff")
        .send()
        .await
        .unwrap();
    let echoed: Value = r.json().await.unwrap();
    assert!(echoed["headers"].get("x-user-id").is_none(), "{echoed}");
    assert!(echoed["headers"].get("x-user-roles").is_none(), "{echoed}");

    let hits = catalog.hits();
    let (forger, _) = key(12);
    let expired = sign(&identity.encoding, &claims(-120, &jti));
    let none = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","kid":"test-kid"}"#),
        B64.encode(claims(300, &jti).to_string())
    );
    for (what, token) in [
        ("forged", sign(&forger, &claims(300, &jti))),
        ("expired", expired),
        ("alg none", none),
        ("garbage", "garbage".to_owned()),
    ] {
        let r = bff
            .http
            .get(bff.url("/api/catalog/products/1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{what}");
        assert!(r.headers().contains_key("www-authenticate"), "{what}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/problem+json"),
            "{what}"
        );
    }
    let r = bff
        .http
        .get(bff.url("/api/catalog/products/1"))
        .header("authorization", "Basic YWxpY2U6eA==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "another scheme");
    assert_eq!(
        catalog.hits(),
        hits,
        "no refused token reached the upstream"
    );

    // Revoked: identity's denylist entry stops it at once.
    let redis = redis::Client::open(common::redis_url().unwrap()).unwrap();
    let mut conn = redis.get_multiplexed_async_connection().await.unwrap();
    let key = format!("identity:revoked:{jti}");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("1")
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = bff
        .http
        .get(bff.url("/api/catalog/products/1"))
        .bearer_auth(&good)
        .send()
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "revoked");
    assert_eq!(catalog.hits(), hits);
}

#[tokio::test]
async fn a_user_has_one_bucket_whatever_session_ids_they_send() {
    let catalog = Fake::start("catalog-1").await;
    let identity = issuer().await;
    let Some(bff) = spawn_bff(
        &[&catalog],
        &[
            ("IDENTITY_URLS", &identity.base),
            ("RATE_LIMIT_CAPACITY", "3"),
            ("RATE_LIMIT_REFILL_PER_SEC", "1"),
        ],
    )
    .await
    else {
        return;
    };
    let token = sign(
        &identity.encoding,
        &claims(300, &uuid::Uuid::new_v4().to_string()),
    );
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = bff
            .http
            .get(bff.url("/api/catalog/products/1"))
            .bearer_auth(&token)
            .header("x-session-id", format!("fresh-{i}"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "a 3-token bucket, five requests under five session ids: {statuses:?}"
    );
}
