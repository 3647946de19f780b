//! A fake identity that behaves like the real one where the BFF depends on
//! it: Ed25519 access tokens published in a JWKS, the password grant, the
//! refresh grant with rotation and reuse detection (a refresh token
//! presented twice revokes its whole family), and `/revoke`. It counts what
//! reached it, so tests can say "exactly one refresh".

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use uuid::Uuid;

pub const KID: &str = "fake-identity-kid";
/// Seconds a refresh token (and so a session) lives.
pub const REFRESH_TTL: u64 = 3600;

/// (user id, name, roles) of each known user; the password is `<name>-password`.
pub const USERS: [(&str, &str, &str); 2] = [
    ("00000000-0000-4000-8000-00000000a11c", "alice", "customer"),
    ("00000000-0000-4000-8000-0000000000da", "dave", "staff"),
];

struct RefreshToken {
    family: Uuid,
    user: usize,
    spent: bool,
}

#[derive(Default)]
struct Books {
    tokens: HashMap<String, RefreshToken>,
    revoked_families: HashSet<Uuid>,
    revoked_access: Vec<String>,
}

/// What the fake counts and how it behaves.
pub struct Inner {
    encoding: EncodingKey,
    books: Mutex<Books>,
    /// Access-token lifetime on the password grant, seconds.
    pub password_access_ttl: AtomicI64,
    /// Access-token lifetime on the refresh grant, seconds.
    pub refresh_access_ttl: AtomicI64,
    /// How long a refresh grant takes, ms (so concurrent requests overlap).
    pub refresh_delay_ms: AtomicU64,
    pub password_grants: AtomicU64,
    pub refresh_grants: AtomicU64,
    pub reuse_detected: AtomicU64,
}

/// A running fake identity.
#[derive(Clone)]
pub struct FakeIdentity {
    pub base: String,
    pub inner: Arc<Inner>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn invalid_grant(reason: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [("content-type", "application/problem+json")],
        Json(
            json!({"status": 400, "title": "Invalid grant", "detail": reason,
                    "error": "invalid_grant", "reason": reason}),
        ),
    )
        .into_response()
}

impl Inner {
    fn issue(&self, books: &mut Books, user: usize, family: Uuid, ttl: i64) -> Value {
        let (id, name, role) = USERS[user];
        let jti = Uuid::new_v4();
        let claims = json!({"iss": "storefront-identity", "aud": "storefront", "sub": id,
            "name": name, "roles": [role], "jti": jti, "sid": family,
            "iat": now(), "exp": now() + ttl});
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(KID.into());
        let access = jsonwebtoken::encode(&h, &claims, &self.encoding).unwrap();
        let refresh = Uuid::new_v4().simple().to_string();
        books.tokens.insert(
            refresh.clone(),
            RefreshToken {
                family,
                user,
                spent: false,
            },
        );
        json!({"access_token": access, "token_type": "Bearer", "expires_in": ttl,
               "refresh_token": refresh, "refresh_expires_in": REFRESH_TTL, "jti": jti})
    }
}

async fn token(State(s): State<Arc<Inner>>, Json(req): Json<Value>) -> Response {
    match req["grant_type"].as_str() {
        Some("password") => {
            s.password_grants.fetch_add(1, Ordering::SeqCst);
            let name = req["username"].as_str().unwrap_or_default();
            if name == "throttled" {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        ("content-type", "application/problem+json"),
                        ("retry-after", "42"),
                    ],
                    Json(json!({"status": 429, "detail": "too many failed sign-ins"})),
                )
                    .into_response();
            }
            let Some(user) = USERS.iter().position(|u| u.1 == name) else {
                return invalid_grant("bad_credentials");
            };
            if req["password"].as_str() != Some(&format!("{name}-password")) {
                return invalid_grant("bad_credentials");
            }
            let ttl = s.password_access_ttl.load(Ordering::SeqCst);
            let mut books = s.books.lock().unwrap();
            Json(s.issue(&mut books, user, Uuid::new_v4(), ttl)).into_response()
        }
        Some("refresh_token") => {
            s.refresh_grants.fetch_add(1, Ordering::SeqCst);
            let delay = s.refresh_delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let presented = req["refresh_token"].as_str().unwrap_or_default();
            let ttl = s.refresh_access_ttl.load(Ordering::SeqCst);
            let mut books = s.books.lock().unwrap();
            let Some(t) = books.tokens.get_mut(presented) else {
                return invalid_grant("unknown");
            };
            let (family, user) = (t.family, t.user);
            if t.spent {
                books.revoked_families.insert(family);
                s.reuse_detected.fetch_add(1, Ordering::SeqCst);
                return invalid_grant("reuse_detected");
            }
            t.spent = true;
            if books.revoked_families.contains(&family) {
                return invalid_grant("revoked");
            }
            Json(s.issue(&mut books, user, family, ttl)).into_response()
        }
        _ => invalid_grant("unsupported"),
    }
}

async fn revoke(State(s): State<Arc<Inner>>, Json(req): Json<Value>) -> Json<Value> {
    let token = req["token"].as_str().unwrap_or_default().to_owned();
    let mut books = s.books.lock().unwrap();
    if token.matches('.').count() == 2 {
        books.revoked_access.push(token);
        return Json(json!({"revoked": true, "token_type": "access_token"}));
    }
    let family = books.tokens.get(&token).map(|t| t.family);
    if let Some(f) = family {
        books.revoked_families.insert(f);
    }
    Json(json!({"revoked": family.is_some(), "token_type": "refresh_token"}))
}

impl FakeIdentity {
    pub async fn start() -> Self {
        let sk = SigningKey::from_bytes(&[21; 32]);
        let der = sk.to_pkcs8_der().unwrap();
        let x = B64.encode(sk.verifying_key().to_bytes());
        let inner = Arc::new(Inner {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            books: Mutex::default(),
            password_access_ttl: AtomicI64::new(300),
            refresh_access_ttl: AtomicI64::new(300),
            refresh_delay_ms: AtomicU64::new(0),
            password_grants: AtomicU64::new(0),
            refresh_grants: AtomicU64::new(0),
            reuse_detected: AtomicU64::new(0),
        });
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": KID, "x": x}]});
        let app = Router::new()
            .route(
                "/.well-known/jwks.json",
                get(move || {
                    let j = jwks.clone();
                    async move { Json(j) }
                }),
            )
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, inner }
    }

    /// An access token for `name` (one of [`USERS`]), good for `ttl` seconds,
    /// as identity would sign it: for bearer requests.
    pub fn access_token(&self, name: &str, ttl: i64) -> String {
        let user = USERS
            .iter()
            .position(|u| u.1 == name)
            .expect("a known user");
        let mut books = self.inner.books.lock().unwrap();
        self.inner.issue(&mut books, user, Uuid::new_v4(), ttl)["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn refresh_grants(&self) -> u64 {
        self.inner.refresh_grants.load(Ordering::SeqCst)
    }

    pub fn reuse_detected(&self) -> u64 {
        self.inner.reuse_detected.load(Ordering::SeqCst)
    }

    /// Whether the family of `refresh_token` has been revoked.
    pub fn family_revoked(&self, refresh_token: &str) -> bool {
        let books = self.inner.books.lock().unwrap();
        books
            .tokens
            .get(refresh_token)
            .is_some_and(|t| books.revoked_families.contains(&t.family))
    }

    /// Revokes every family (an administrator ending all sessions).
    pub fn revoke_everything(&self) {
        let mut books = self.inner.books.lock().unwrap();
        let families: Vec<Uuid> = books.tokens.values().map(|t| t.family).collect();
        books.revoked_families.extend(families);
    }

    /// Access tokens revoked so far.
    pub fn revoked_access(&self) -> Vec<String> {
        self.inner.books.lock().unwrap().revoked_access.clone()
    }
}
