//! Access tokens (JWTs signed with our Ed25519 key) and refresh tokens
//! (opaque random strings of which only a SHA-256 is stored).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::keys::SigningKeys;

/// What an access token asserts. `sub` is the user's id; `jti` is what the
/// denylist holds; `sid` names the refresh family the token came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer (`IDENTITY_ISSUER`).
    pub iss: String,
    /// Audience (`IDENTITY_AUDIENCE`).
    pub aud: String,
    /// The user's id.
    pub sub: Uuid,
    /// The user's login name, for display.
    pub name: String,
    /// The user's roles when the token was issued (`customer`, `staff`):
    /// what resource servers authorize on. Absent in tokens minted before
    /// roles existed, which then carry none.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Unique token id: the denylist key.
    pub jti: Uuid,
    /// The refresh family (login session) the token belongs to.
    pub sid: Uuid,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
}

/// Who a token is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The user's id (`sub`).
    pub id: Uuid,
    /// The login name.
    pub name: &'a str,
    /// The user's roles.
    pub roles: &'a [String],
}

/// Why an access token is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Past `exp`.
    #[error("the token has expired")]
    Expired,
    /// Bad signature, unknown `kid`, wrong issuer or audience, garbled.
    #[error("the token is not valid")]
    Invalid,
}

/// Signs and checks access tokens with one key and one set of rules.
pub struct Minter {
    /// The key tokens are signed with (its `kid` goes in the header).
    keys: SigningKeys,
    /// Checks every token must pass: EdDSA only, our issuer and audience,
    /// `exp` with no leeway (a revoked-on-expiry test must not wait a minute).
    validation: Validation,
    /// `iss` of issued tokens.
    issuer: String,
    /// `aud` of issued tokens.
    audience: String,
}

impl Minter {
    /// A minter signing with `keys` as `issuer` for `audience`; it accepts
    /// only tokens naming both.
    pub fn new(keys: SigningKeys, issuer: &str, audience: &str) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Self {
            keys,
            validation,
            issuer: issuer.into(),
            audience: audience.into(),
        }
    }

    /// The key set, for `/.well-known/jwks.json`.
    pub fn keys(&self) -> &SigningKeys {
        &self.keys
    }

    /// New claims for `user` (the subject and its roles), valid from
    /// `now` (epoch seconds) for `ttl`.
    pub fn claims(&self, user: &Subject<'_>, sid: Uuid, now: u64, ttl: Duration) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.id,
            name: user.name.into(),
            roles: user.roles.to_vec(),
            jti: Uuid::new_v4(),
            sid,
            iat: now,
            exp: now + ttl.as_secs(),
        }
    }

    /// The signed compact JWT.
    pub fn sign(&self, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.keys.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.keys.encoding)
            .expect("signing with a valid Ed25519 key cannot fail")
    }

    /// Checks signature, `kid`, issuer, audience and expiry (against the
    /// system clock, as the library does).
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.kid.as_deref() != Some(self.keys.kid.as_str()) {
            return Err(TokenError::Invalid);
        }
        jsonwebtoken::decode::<Claims>(token, &self.keys.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })
    }
}

/// A refresh token as the client sees it: 32 random bytes, base64url.
pub fn new_refresh_token() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

/// What is stored for a refresh token: its SHA-256 (a database leak gives
/// nobody a usable token; a fast hash is fine for 256 random bits).
pub fn refresh_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Seconds since the epoch, the unit of `iat` and `exp`.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CUSTOMER: &[String] = &[];

    fn subject(name: &'static str) -> Subject<'static> {
        Subject {
            id: Uuid::new_v4(),
            name,
            roles: CUSTOMER,
        }
    }

    fn minter() -> Minter {
        Minter::new(SigningKeys::new(None).unwrap(), "iss-test", "aud-test")
    }

    #[test]
    fn a_signed_token_verifies_and_round_trips_its_claims() {
        let m = minter();
        let claims = m.claims(
            &subject("alice"),
            Uuid::new_v4(),
            now_secs(),
            Duration::from_secs(60),
        );
        let token = m.sign(&claims);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert_eq!(header.kid.as_deref(), Some(m.keys().kid.as_str()));
        assert_eq!(m.verify(&token), Ok(claims));
    }

    #[test]
    fn an_expired_token_is_expired_not_invalid() {
        let m = minter();
        let claims = m.claims(
            &subject("alice"),
            Uuid::new_v4(),
            now_secs() - 10,
            Duration::from_secs(5),
        );
        assert_eq!(m.verify(&m.sign(&claims)), Err(TokenError::Expired));
    }

    #[test]
    fn another_key_wrong_audience_or_tampering_is_invalid() {
        let (m, other) = (minter(), minter());
        let claims = m.claims(
            &subject("alice"),
            Uuid::new_v4(),
            now_secs(),
            Duration::from_secs(60),
        );
        assert_eq!(other.verify(&m.sign(&claims)), Err(TokenError::Invalid));
        let foreign = Minter::new(SigningKeys::new(None).unwrap(), "iss-test", "elsewhere");
        let wrong_aud = foreign.sign(&foreign.claims(
            &subject("x"),
            Uuid::new_v4(),
            now_secs(),
            Duration::from_secs(60),
        ));
        assert_eq!(m.verify(&wrong_aud), Err(TokenError::Invalid));
        let token = m.sign(&claims);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut body: Claims = serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
        body.name = "mallory".into();
        parts[1] = B64.encode(serde_json::to_vec(&body).unwrap());
        assert_eq!(m.verify(&parts.join(".")), Err(TokenError::Invalid));
        assert_eq!(m.verify("not.a.jwt"), Err(TokenError::Invalid));
    }

    #[test]
    fn roles_ride_in_the_token_and_a_token_without_them_still_verifies() {
        let m = minter();
        let roles = vec!["staff".to_owned()];
        let staff = Subject {
            id: Uuid::new_v4(),
            name: "dave",
            roles: &roles,
        };
        let claims = m.claims(&staff, Uuid::new_v4(), now_secs(), Duration::from_secs(60));
        let verified = m.verify(&m.sign(&claims)).unwrap();
        assert_eq!(verified.roles, ["staff"]);
        let mut legacy = serde_json::to_value(&claims).unwrap();
        legacy.as_object_mut().unwrap().remove("roles");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(m.keys().kid.clone());
        let old = jsonwebtoken::encode(&header, &legacy, &m.keys.encoding).unwrap();
        assert_eq!(m.verify(&old).unwrap().roles, Vec::<String>::new());
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let (a, b) = (new_refresh_token(), new_refresh_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(refresh_hash(&a).len(), 32);
        assert_eq!(refresh_hash(&a), refresh_hash(&a));
    }
}
