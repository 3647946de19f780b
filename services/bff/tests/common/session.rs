//! Cookie sessions: a BFF with its sessions in real Redis in front of a
//! fake identity, a signed-in browser, and the stored session.

use serde_json::Value;
use storefront_bff::session::{Session, id_hash};

use super::identity::FakeIdentity;
use super::{Fake, TestBff, spawn_bff};

/// The session key prefix the tests' BFFs use (one per test).
pub fn prefix() -> String {
    format!("test-session:{}", uuid::Uuid::new_v4().simple())
}

/// A BFF with cookie sessions in front of a fake identity and catalog.
pub struct Env {
    pub bff: TestBff,
    pub identity: FakeIdentity,
    pub catalog: Fake,
    pub prefix: String,
}

/// An [`Env`] with `extra` settings; `None` without Redis.
pub async fn env(extra: &[(&str, &str)]) -> Option<Env> {
    let catalog = Fake::start("catalog-1").await;
    let identity = FakeIdentity::start().await;
    let prefix = prefix();
    let mut vars = vec![
        ("IDENTITY_URLS", identity.base.as_str()),
        ("SESSION_KEY_PREFIX", prefix.as_str()),
    ];
    vars.extend_from_slice(extra);
    let bff = spawn_bff(&[&catalog], &vars).await?;
    Some(Env {
        bff,
        identity,
        catalog,
        prefix,
    })
}

/// A signed-in browser: its cookie value and CSRF token.
pub struct Browser {
    pub id: String,
    pub csrf: String,
}

impl Browser {
    pub fn cookie(&self) -> String {
        format!("theme=dark; sf_session={}", self.id)
    }
}

/// Signs `name` in with their password; the browser that holds the session.
pub async fn sign_in(env: &Env, name: &str) -> Browser {
    let r = env
        .bff
        .http
        .post(env.bff.url("/api/session"))
        .json(&serde_json::json!({"username": name, "password": format!("{name}-password")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let id = set
        .strip_prefix("sf_session=")
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    let body: Value = r.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    Browser { id, csrf }
}

/// A connection to the test Redis.
pub async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(super::redis_url().unwrap())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The session `b` holds, as stored in Redis.
pub async fn stored(env: &Env, b: &Browser) -> Option<Session> {
    let raw: Option<String> = redis::cmd("GET")
        .arg(format!("{}:{}", env.prefix, id_hash(&b.id)))
        .query_async(&mut redis().await)
        .await
        .unwrap();
    raw.map(|r| serde_json::from_str(&r).unwrap())
}
