//! Bearer access tokens, verified at the edge: EdDSA only, a key from
//! identity's JWKS by `kid`, our issuer and audience, `exp`/`nbf` with a
//! small leeway for clock skew, and the `jti` denylist identity keeps in
//! Redis (`identity:revoked:<jti>`), so a revoked token stops working at the
//! BFF the moment identity revokes it.
//!
//! A signature, once checked, is remembered for a short while
//! ([`SignatureCache`]): a browser or API client sends the same token on
//! every request, and an Ed25519 verification costs more than everything
//! else the edge does. Expiry and the denylist are still checked on every
//! request; only the signature (and the claims it covers) is not
//! re-verified.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use redis::aio::ConnectionManager;
use serde::Deserialize;
use uuid::Uuid;

use super::jwks::{Jwks, Lookup};

/// Prefix of identity's denylist keys (see identity's `denylist.rs`).
pub const DENYLIST_PREFIX: &str = "identity:revoked:";
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;
/// How long the denylist lookup may take before the request is refused
/// (also when the rate limiter reads it, `crate::limiter`).
pub const DENYLIST_TIMEOUT: Duration = Duration::from_millis(500);

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user (`sub`).
    pub user: Uuid,
    /// Login name, for logs.
    pub name: String,
    /// `customer`, `staff`, …: what authorization decides on.
    pub roles: Vec<String>,
    /// The token's id (`jti`), what the denylist holds.
    pub jti: Uuid,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
}

impl Identity {
    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Claims {
    sub: Uuid,
    #[serde(default)]
    name: String,
    #[serde(default)]
    roles: Vec<String>,
    jti: Uuid,
    exp: u64,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// Not a JWT, the wrong algorithm, no `kid`, a bad signature, a key
    /// identity never published, the wrong issuer or audience, not yet valid.
    #[error("the access token is not valid")]
    Invalid,
    #[error("the access token has expired")]
    /// Past its `exp`.
    Expired,
    #[error("the access token has been revoked")]
    /// Its `jti` is on identity's denylist.
    Revoked,
    /// Identity's keys or the denylist could not be read: refused, not
    /// waved through (fail closed), and the client may retry.
    #[error("the access token cannot be checked right now")]
    Unavailable,
}

impl Rejected {
    /// Label for the metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Tokens whose signature was verified, and when: a bounded map from
/// the whole token (so no other token can hit an entry) to its claims.
/// Entries live [`SIGNATURE_CACHE_TTL`], so a key identity withdraws stops
/// being honoured soon; the map is emptied when it fills up.
#[derive(Default)]
struct SignatureCache {
    entries: HashMap<Box<str>, (Claims, Instant)>,
}

/// How long a checked signature is remembered.
pub const SIGNATURE_CACHE_TTL: Duration = Duration::from_secs(60);
/// Tokens remembered at most (a few MB).
const SIGNATURE_CACHE_MAX: usize = 10_000;

impl SignatureCache {
    fn get(&self, token: &str, now: Instant) -> Option<Claims> {
        let (claims, at) = self.entries.get(token)?;
        (now.duration_since(*at) < SIGNATURE_CACHE_TTL).then(|| claims.clone())
    }

    fn put(&mut self, token: &str, claims: Claims, now: Instant) {
        if self.entries.len() >= SIGNATURE_CACHE_MAX {
            self.entries.clear();
        }
        self.entries.insert(token.into(), (claims, now));
    }
}

/// Checks tokens.
#[derive(Clone)]
pub struct Verifier {
    jwks: Jwks,
    validation: Validation,
    signatures: Arc<Mutex<SignatureCache>>,
    /// The denylist; `None` only in unit tests.
    redis: Option<ConnectionManager>,
}

impl Verifier {
    /// A verifier of tokens signed by a key in `jwks` for `issuer` and
    /// `audience`; with `redis`, it also checks identity's denylist.
    pub fn new(jwks: Jwks, issuer: &str, audience: &str, redis: Option<ConnectionManager>) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            jwks,
            validation,
            signatures: Arc::default(),
            redis,
        }
    }

    /// The token's identity, or why it is refused: [`Verifier::check`]
    /// and the denylist.
    pub async fn verify(&self, token: &str) -> Result<Identity, Rejected> {
        let id = self.check(token).await?;
        if self.revoked(id.jti).await? {
            return Err(Rejected::Revoked);
        }
        Ok(id)
    }

    /// Everything but the denylist: signature, key, claims, expiry. The
    /// caller must still look up [`Verifier::denylist_key`]; the edge does
    /// it in the rate limiter's Redis call (one round trip, not two).
    pub async fn check(&self, token: &str) -> Result<Identity, Rejected> {
        let c = match self.remembered(token) {
            Some(c) => c,
            None => {
                let c = self.check_signature(token).await?;
                self.cache().put(token, c.clone(), Instant::now());
                c
            }
        };
        Ok(Identity {
            user: c.sub,
            name: c.name,
            roles: c.roles,
            jti: c.jti,
            exp: c.exp,
        })
    }

    /// The Redis key whose presence revokes the token `jti`; `None` when
    /// this verifier has no denylist (unit tests).
    pub fn denylist_key(&self, jti: Uuid) -> Option<String> {
        self.redis
            .as_ref()
            .map(|_| format!("{DENYLIST_PREFIX}{}", jti.hyphenated()))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, SignatureCache> {
        storefront_kit::sync::lock(&self.signatures)
    }

    /// The claims of a token whose signature was checked lately and which
    /// has not expired since (the same leeway as a full check).
    fn remembered(&self, token: &str) -> Option<Claims> {
        let c = self.cache().get(token, Instant::now())?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        (c.exp.saturating_add(LEEWAY_SECS) > now).then_some(c)
    }

    /// The full check: header, key, signature, every claim.
    async fn check_signature(&self, token: &str) -> Result<Claims, Rejected> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejected::Invalid)?;
        // `alg` is ours to choose, never the token's: only EdDSA.
        if header.alg != Algorithm::EdDSA {
            return Err(Rejected::Invalid);
        }
        let kid = header.kid.ok_or(Rejected::Invalid)?;
        let key = self.jwks.key(&kid).await.map_err(|e| match e {
            Lookup::Unknown => Rejected::Invalid,
            Lookup::Unavailable => Rejected::Unavailable,
        })?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => Rejected::Expired,
                _ => Rejected::Invalid,
            }
        })?;
        Ok(data.claims)
    }

    async fn revoked(&self, jti: Uuid) -> Result<bool, Rejected> {
        let Some(redis) = &self.redis else {
            return Ok(false);
        };
        let mut conn = redis.clone();
        let key = format!("{DENYLIST_PREFIX}{}", jti.hyphenated());
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(&key);
        let lookup = cmd.query_async::<bool>(&mut conn);
        match tokio::time::timeout(DENYLIST_TIMEOUT, lookup).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "denylist lookup failed: refusing the token");
                Err(Rejected::Unavailable)
            }
            Err(_) => {
                tracing::warn!("denylist lookup timed out: refusing the token");
                Err(Rejected::Unavailable)
            }
        }
    }
}

/// Test helpers other modules' tests sign tokens with.
#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::auth::jwks::Key;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use jsonwebtoken::{DecodingKey, EncodingKey, Header};
    use serde_json::{Value, json};

    /// An Ed25519 key that signs test tokens under one `kid`.
    pub struct Signer {
        kid: String,
        encoding: EncodingKey,
        /// Its public half, as the JWKS would list it.
        pub key: Key,
    }

    /// A signer from a fixed seed, so that its key is the same every run.
    pub fn signer(seed: u8, kid: &str) -> Signer {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let der = sk.to_pkcs8_der().unwrap();
        let x = B64.encode(sk.verifying_key().to_bytes());
        Signer {
            kid: kid.into(),
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            key: Key {
                kid: kid.into(),
                key: DecodingKey::from_ed_components(&x).unwrap(),
            },
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// Alice's claims, expiring `exp_in` seconds from now.
    pub fn claims(exp_in: i64) -> Value {
        json!({"iss": "storefront-identity", "aud": "storefront",
               "sub": "00000000-0000-4000-8000-00000000a11c", "name": "alice",
               "roles": ["customer"], "jti": Uuid::new_v4(), "sid": Uuid::new_v4(),
               "iat": now(), "exp": (now() as i64 + exp_in) as u64})
    }

    impl Signer {
        /// The compact JWS of `claims`, EdDSA under this signer's `kid`.
        pub fn sign(&self, claims: &Value) -> String {
            let mut h = Header::new(Algorithm::EdDSA);
            h.kid = Some(self.kid.clone());
            jsonwebtoken::encode(&h, claims, &self.encoding).unwrap()
        }
    }

    fn verifier(keys: Vec<Key>) -> Verifier {
        Verifier::new(Jwks::fixed(keys), "storefront-identity", "storefront", None)
    }

    #[tokio::test]
    async fn a_token_identity_signed_is_accepted_with_its_roles() {
        let s = signer(1, "k1");
        let v = verifier(vec![s.key.clone()]);
        let id = v.verify(&s.sign(&claims(300))).await.unwrap();
        assert_eq!(id.name, "alice");
        assert!(id.has_role("customer") && !id.has_role("staff"));
    }

    #[tokio::test]
    async fn expiry_is_checked_with_a_small_leeway() {
        let s = signer(1, "k1");
        let v = verifier(vec![s.key.clone()]);
        assert_eq!(
            v.verify(&s.sign(&claims(-60))).await,
            Err(Rejected::Expired)
        );
        // Two seconds past `exp` is within the leeway.
        assert!(v.verify(&s.sign(&claims(-2))).await.is_ok());
    }

    #[tokio::test]
    async fn a_remembered_signature_still_expires_and_a_changed_token_is_checked_again() {
        let s = signer(1, "k1");
        let v = verifier(vec![s.key.clone()]);
        let token = s.sign(&claims(300));
        assert!(v.verify(&token).await.is_ok());
        assert!(v.remembered(&token).is_some(), "remembered after a check");
        // One character of the signature changed: not the remembered token.
        let mut forged = token.clone().into_bytes();
        let i = forged.len() - 10;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(v.verify(&forged).await, Err(Rejected::Invalid));
        // A remembered entry for a token past its expiry is not used.
        let old = s.sign(&claims(-60));
        let mut c: Claims = serde_json::from_value(claims(-60)).unwrap();
        c.exp = now() - 60;
        v.cache().put(&old, c, Instant::now());
        assert!(v.remembered(&old).is_none());
        assert_eq!(v.verify(&old).await, Err(Rejected::Expired));
    }

    #[test]
    fn the_signature_cache_forgets_after_its_ttl_and_when_full() {
        let mut cache = SignatureCache::default();
        let c: Claims = serde_json::from_value(claims(300)).unwrap();
        let t0 = Instant::now();
        cache.put("a", c.clone(), t0);
        assert!(cache.get("a", t0 + Duration::from_secs(59)).is_some());
        assert!(cache.get("a", t0 + SIGNATURE_CACHE_TTL).is_none());
        for i in 0..SIGNATURE_CACHE_MAX {
            cache.put(&i.to_string(), c.clone(), t0);
        }
        assert!(cache.entries.len() <= SIGNATURE_CACHE_MAX);
    }

    #[tokio::test]
    async fn forged_tokens_are_refused() {
        let good = signer(1, "k1");
        let v = verifier(vec![good.key.clone()]);
        // Another key claiming identity's kid.
        let forger = signer(2, "k1");
        assert_eq!(
            v.verify(&forger.sign(&claims(300))).await,
            Err(Rejected::Invalid)
        );
        // A kid identity never published (no fetch: the fixed set is final).
        let stranger = signer(2, "k9");
        assert_eq!(
            v.verify(&stranger.sign(&claims(300))).await,
            Err(Rejected::Invalid)
        );
        // alg: none, and HS256 "signed" with the public key.
        let body = B64.encode(claims(300).to_string());
        let none = format!(
            "{}.{body}.",
            B64.encode(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#)
        );
        assert_eq!(v.verify(&none).await, Err(Rejected::Invalid));
        let hs = jsonwebtoken::encode(
            &Header {
                kid: Some("k1".into()),
                ..Header::new(Algorithm::HS256)
            },
            &claims(300),
            &EncodingKey::from_secret(b"public"),
        )
        .unwrap();
        assert_eq!(v.verify(&hs).await, Err(Rejected::Invalid));
        // Garbage, and a tampered payload.
        assert_eq!(v.verify("garbage").await, Err(Rejected::Invalid));
        let t = good.sign(&claims(300));
        let mut parts: Vec<&str> = t.split('.').collect();
        let mut c = claims(300);
        c["roles"] = json!(["staff"]);
        let tampered = B64.encode(c.to_string());
        parts[1] = &tampered;
        assert_eq!(v.verify(&parts.join(".")).await, Err(Rejected::Invalid));
    }

    #[tokio::test]
    async fn wrong_issuer_audience_or_a_future_nbf_is_refused() {
        let s = signer(1, "k1");
        let v = verifier(vec![s.key.clone()]);
        for (field, value) in [
            ("iss", json!("someone-else")),
            ("aud", json!("another-app")),
            ("nbf", json!(now() + 3600)),
        ] {
            let mut c = claims(300);
            c[field] = value;
            assert_eq!(
                v.verify(&s.sign(&c)).await,
                Err(Rejected::Invalid),
                "{field}"
            );
        }
    }
}
