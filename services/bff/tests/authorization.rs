//! Authorization at the edge, on a real BFF: checkout and claims need a
//! customer, catalog writes need staff, catalog reads and identity are
//! public; a refusal is 401 (anonymous, with a challenge) or 403 (the wrong
//! role), problem+json, and reaches no upstream. Tokens are signed by a fake
//! identity the BFF verifies against.

mod common;

use reqwest::Method;

use common::Fake;
use common::identity::FakeIdentity;

struct Env {
    bff: common::TestBff,
    identity: FakeIdentity,
    catalog: Fake,
    claims: Fake,
    checkout: Fake,
}

async fn env() -> Option<Env> {
    let catalog = Fake::start("catalog-1").await;
    let claims = Fake::start("claims-1").await;
    let checkout = Fake::start("checkout-1").await;
    let identity = FakeIdentity::start().await;
    let bff = common::spawn_bff(
        &[&catalog],
        &[
            ("IDENTITY_URLS", &identity.base),
            ("CLAIMS_URLS", &claims.base),
            ("CHECKOUT_URLS", &checkout.base),
        ],
    )
    .await?;
    Some(Env {
        bff,
        identity,
        catalog,
        claims,
        checkout,
    })
}

impl Env {
    fn hits(&self) -> u64 {
        self.catalog.hits() + self.claims.hits() + self.checkout.hits()
    }

    /// The status of `method path` as `who` (`None`: anonymous).
    async fn status(&self, method: Method, path: &str, who: Option<&str>) -> reqwest::Response {
        let mut r = self
            .bff
            .http
            .request(method, self.bff.url(path))
            .json(&serde_json::json!({}));
        if let Some(name) = who {
            r = r.bearer_auth(self.identity.access_token(name, 300));
        }
        r.send().await.unwrap()
    }
}

fn is_problem(r: &reqwest::Response) -> bool {
    r.headers()["content-type"] == storefront_kit::error::PROBLEM_JSON
}

#[tokio::test]
async fn checkout_and_claims_need_a_signed_in_customer() {
    let Some(env) = env().await else { return };
    for path in ["/api/checkout/orders", "/api/claims/claims"] {
        for method in [Method::GET, Method::POST] {
            let hits = env.hits();
            let r = env.status(method.clone(), path, None).await;
            assert_eq!(r.status(), 401, "anonymous {method} {path}");
            assert!(r.headers().contains_key("www-authenticate"));
            assert!(is_problem(&r));
            let r = env.status(method.clone(), path, Some("dave")).await;
            assert_eq!(r.status(), 403, "staff {method} {path}");
            assert!(is_problem(&r));
            assert_eq!(env.hits(), hits, "refusals reach nothing");
            let r = env.status(method.clone(), path, Some("alice")).await;
            assert_eq!(r.status(), 200, "customer {method} {path}");
            assert_eq!(env.hits(), hits + 1);
        }
    }
}

#[tokio::test]
async fn catalog_reads_are_public_and_its_writes_need_staff() {
    let Some(env) = env().await else { return };
    let r = env
        .status(Method::GET, "/api/catalog/products/1", None)
        .await;
    assert_eq!(r.status(), 200);
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let hits = env.hits();
        let r = env
            .status(method.clone(), "/api/catalog/products/1", None)
            .await;
        assert_eq!(r.status(), 401, "anonymous {method}");
        let r = env
            .status(method.clone(), "/api/catalog/products/1", Some("alice"))
            .await;
        assert_eq!(r.status(), 403, "customer {method}");
        assert_eq!(env.hits(), hits);
        let r = env
            .status(method.clone(), "/api/catalog/products/1", Some("dave"))
            .await;
        assert_eq!(r.status(), 200, "staff {method}");
    }
    // Holding stock for a cart is a customer's.
    let r = env
        .status(Method::POST, "/api/catalog/reservations", None)
        .await;
    assert_eq!(r.status(), 401);
    let r = env
        .status(Method::POST, "/api/catalog/reservations", Some("alice"))
        .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn identity_stays_public_so_anyone_can_sign_in() {
    let Some(env) = env().await else { return };
    let r = env
        .bff
        .http
        .post(env.bff.url("/api/identity/token"))
        .json(&serde_json::json!({"grant_type": "password", "username": "alice", "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "forwarded to identity anonymously");
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["access_token"].is_string());
}

#[tokio::test]
async fn a_cookie_session_is_authorized_by_its_users_roles() {
    let Some(env) = env().await else { return };
    let r = env
        .bff
        .http
        .post(env.bff.url("/api/session"))
        .json(&serde_json::json!({"username": "alice", "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let csrf = r.json::<serde_json::Value>().await.unwrap()["csrf_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let send = |method: Method, path: &str| {
        env.bff
            .http
            .request(method, env.bff.url(path))
            .header("cookie", &cookie)
            .header("x-csrf-token", &csrf)
            .json(&serde_json::json!({}))
            .send()
    };
    assert_eq!(
        send(Method::POST, "/api/claims/claims")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(Method::PATCH, "/api/catalog/products/1")
            .await
            .unwrap()
            .status(),
        403
    );
}
