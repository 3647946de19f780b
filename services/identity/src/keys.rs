//! The service's signing key: Ed25519 (JWS `EdDSA`), published as a JWK so
//! verifiers (the BFF) need nothing but `/.well-known/jwks.json`.
//!
//! The key comes from `JWT_SIGNING_SEED` when set (tokens survive a
//! restart), else it is generated at startup. Its `kid` is the RFC 7638
//! thumbprint of the public JWK, so the same key always has the same id and
//! a new key always a new one: a verifier that meets an unknown `kid`
//! knows to refetch the JWKS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{DecodingKey, EncodingKey};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Why `JWT_SIGNING_SEED` is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not base64url, or not 32 bytes once decoded.
    #[error("JWT_SIGNING_SEED must be 32 bytes, base64url-encoded (43 characters, no padding)")]
    BadSeed,
}

/// The active key pair in the forms the JWT library and the JWKS need.
pub struct SigningKeys {
    /// Key id (`kid` header), the JWK thumbprint.
    pub kid: String,
    /// Private half, PKCS#8 DER inside, for signing.
    pub encoding: EncodingKey,
    /// Public half, for verifying our own tokens (`/userinfo`, `/revoke`).
    pub decoding: DecodingKey,
    /// The public key as a JWK, `kid` included.
    pub jwk: Value,
}

impl SigningKeys {
    /// From a 32-byte seed (base64url), or a random one when `None`.
    pub fn new(seed: Option<&SecretString>) -> Result<Self, KeyError> {
        let bytes: [u8; 32] = match seed {
            Some(seed) => B64
                .decode(seed.expose_secret().trim())
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or(KeyError::BadSeed)?,
            None => rand::random(),
        };
        Ok(Self::from_seed(&bytes))
    }

    fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let der = signing
            .to_pkcs8_der()
            .expect("an Ed25519 key always encodes as PKCS#8");
        let public = signing.verifying_key().to_bytes();
        let x = B64.encode(public);
        let kid = thumbprint(&x);
        Self {
            jwk: json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": x,
                "kid": kid,
                "alg": "EdDSA",
                "use": "sig",
            }),
            kid,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_der(&public),
        }
    }

    /// The JWKS document: every key a verifier should accept (one today;
    /// during a key rollover the old one would stay listed until its last
    /// token expired).
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }
}

/// RFC 7638: SHA-256 over the required members in lexicographic order,
/// without whitespace, base64url.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc8037_example_key_has_the_rfc_thumbprint() {
        // RFC 8037 appendix A.1/A.3: the Ed25519 test key and its thumbprint.
        let seed: [u8; 32] = B64
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap()
            .try_into()
            .unwrap();
        let keys = SigningKeys::from_seed(&seed);
        assert_eq!(keys.jwk["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        assert_eq!(keys.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn a_seed_gives_the_same_kid_every_time_and_no_seed_a_new_one() {
        let seed = SecretString::from(B64.encode([7u8; 32]));
        let a = SigningKeys::new(Some(&seed)).unwrap();
        let b = SigningKeys::new(Some(&seed)).unwrap();
        assert_eq!(a.kid, b.kid);
        assert_ne!(a.kid, SigningKeys::new(None).unwrap().kid);
    }

    #[test]
    fn a_short_or_garbled_seed_is_refused() {
        for bad in ["", "abc", "!!!!", &B64.encode([1u8; 31])] {
            let seed = SecretString::from(bad.to_owned());
            assert_eq!(
                SigningKeys::new(Some(&seed)).err(),
                Some(KeyError::BadSeed),
                "{bad}"
            );
        }
    }

    #[test]
    fn jwks_lists_the_public_key_only() {
        let keys = SigningKeys::new(None).unwrap();
        let jwks = keys.jwks();
        let key = &jwks["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["kid"], keys.kid.as_str());
        assert!(
            key.get("d").is_none(),
            "private part must never be published"
        );
    }
}
