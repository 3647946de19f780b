//! The identity harness: the identity service over real HTTP against a
//! real Postgres and Redis, with a static login (the Vault rotation is
//! exercised by the CLI's `tests/identity.rs` on a whole fleet), booted by
//! the kit's [`storefront_kit::testing::spawn_app`].
//!
//! Each test gets its own schema with the migrations (and seeded users)
//! applied, and its own login-throttle keys. They need `TEST_DATABASE_URL`
//! and `TEST_REDIS_URL`; without them each test prints why and passes —
//! except in CI (`CI` set), where a missing URL is a failure.

// Each test binary uses a different subset of the helpers.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use storefront_kit::testing;

pub use storefront_kit::testing::Reply;

/// The lab admin token every test instance is given.
pub const LAB_TOKEN: &str = "test-lab-admin-token";

storefront_kit::test_service! {
    /// The identity service, as the kit's harness boots it. Each instance
    /// counts login attempts under its own keys, so tests (and runs) never
    /// share a throttle window.
    Identity: storefront_identity, "identity", [Postgres, Redis],
    migrations "../../migrations/identity",
    |env| [
        ("LAB_ENDPOINTS", "false"),
        ("LAB_ADMIN_TOKEN", LAB_TOKEN),
        ("LOGIN_THROTTLE_KEY_PREFIX", &format!("identity:test:{}:", env.name)),
        ("LOGIN_FAILURE_WINDOW_SECS", "60"),
        ("SHUTDOWN_GRACE_SECS", "2"),
    ]
}

storefront_kit::test_app! {
    /// A running identity service on a fresh schema.
    TestApp for Identity
}

/// `None` (and a note on stderr) when the test servers aren't configured.
pub async fn spawn_app(lab_endpoints: bool) -> Option<TestApp> {
    spawn_app_with(lab_endpoints, &[]).await
}

/// [`spawn_app`] with extra (or overriding) environment variables.
pub async fn spawn_app_with(lab_endpoints: bool, extra: &[(&str, &str)]) -> Option<TestApp> {
    let lab = if lab_endpoints { "true" } else { "false" };
    let mut vars = vec![("LAB_ENDPOINTS", lab)];
    vars.extend_from_slice(extra);
    testing::spawn_app::<Identity>(&vars).await.map(TestApp)
}

impl TestApp {
    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.0.post(path, body).await
    }

    /// A password grant with the user's seeded password.
    pub async fn login(&self, user: &str) -> Reply {
        self.post(
            "/token",
            &json!({"grant_type": "password", "username": user, "password": format!("{user}-password")}),
        )
        .await
    }

    /// A refresh grant.
    pub async fn refresh(&self, token: &str) -> Reply {
        self.post(
            "/token",
            &json!({"grant_type": "refresh_token", "refresh_token": token}),
        )
        .await
    }

    /// `GET /userinfo` with `access` as the bearer.
    pub async fn userinfo(&self, access: &str) -> Reply {
        self.send(self.http.get(self.url("/userinfo")).bearer_auth(access))
            .await
    }

    /// A wrong-password login, optionally claiming an `X-Forwarded-For`.
    pub async fn guess(&self, user: &str, forwarded_for: Option<&str>) -> Reply {
        let mut request = self.http.post(self.url("/token")).json(&guess(user));
        if let Some(xff) = forwarded_for {
            request = request.header("x-forwarded-for", xff);
        }
        self.send(request).await
    }

    /// Stops the server within 10 s and drops the schema.
    pub async fn cleanup(self) {
        self.0.cleanup().await;
    }
}

/// The JWT's payload, unverified (the tests verify separately).
pub fn payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

/// `v[key]` as a string; the test fails naming the key if it is not one.
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// A password grant with the wrong password.
pub fn guess(user: &str) -> Value {
    json!({"grant_type": "password", "username": user, "password": "not-the-password"})
}

/// Whether the reply is a problem+json.
pub fn is_problem(reply: &Reply) -> bool {
    reply.headers[reqwest::header::CONTENT_TYPE] == "application/problem+json"
}

/// The reply's `Retry-After`, in seconds.
pub fn retry_after(reply: &Reply) -> u64 {
    reply.headers[reqwest::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}
