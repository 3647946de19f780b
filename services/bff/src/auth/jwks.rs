//! Identity's signing keys, as the BFF verifies with them: fetched from
//! `GET <identity>/.well-known/jwks.json`, cached, and fetched again when a
//! token names a `kid` we don't know (identity rotated its key) — but at
//! most once per [`Jwks::min_refetch`], so a stream of tokens with made-up
//! `kid`s cannot turn the BFF into a JWKS flood against identity.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use serde::Deserialize;
use tokio::sync::Mutex;

/// One verification key.
#[derive(Clone)]
pub struct Key {
    /// The key id (`kid`) tokens name.
    pub kid: String,
    /// The public key.
    pub key: DecodingKey,
}

/// A JWKS document as identity publishes it (RFC 7517 / RFC 8037 OKP keys).
#[derive(Debug, Deserialize)]
struct Document {
    keys: Vec<Jwk>,
}

#[derive(Debug, Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    x: Option<String>,
}

/// The usable Ed25519 keys of a JWKS document; anything else is skipped.
pub fn parse(body: &[u8]) -> Result<Vec<Key>, serde_json::Error> {
    let doc: Document = serde_json::from_slice(body)?;
    Ok(doc
        .keys
        .into_iter()
        .filter(|k| k.kty == "OKP" && k.crv.as_deref() == Some("Ed25519"))
        .filter_map(|k| {
            let kid = k.kid?;
            let key = DecodingKey::from_ed_components(k.x.as_deref()?).ok()?;
            Some(Key { kid, key })
        })
        .collect())
}

struct Cache {
    keys: HashMap<String, DecodingKey>,
    /// When we last asked identity (successfully or not).
    fetched: Option<Instant>,
}

/// The cached key set.
#[derive(Clone)]
pub struct Jwks {
    url: String,
    http: reqwest::Client,
    cache: Arc<Mutex<Cache>>,
    min_refetch: Duration,
}

/// Why no key was found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Identity's JWKS has no such `kid` (even after a refetch, or the
    /// refetch is rate-bounded): the token is not ours.
    Unknown,
    /// Identity could not be asked and nothing is cached: try later.
    Unavailable,
}

impl Jwks {
    /// `identity_base` is identity's base URL (`http://127.0.0.1:…`).
    pub fn new(identity_base: &str, http: reqwest::Client, min_refetch: Duration) -> Self {
        Self {
            url: format!(
                "{}/.well-known/jwks.json",
                identity_base.trim_end_matches('/')
            ),
            http,
            cache: Arc::new(Mutex::new(Cache {
                keys: HashMap::new(),
                fetched: None,
            })),
            min_refetch,
        }
    }

    /// A key set that never fetches (tests).
    pub fn fixed(keys: Vec<Key>) -> Self {
        let j = Self::new("http://127.0.0.1:9", reqwest::Client::new(), Duration::MAX);
        let cache = Cache {
            keys: keys.into_iter().map(|k| (k.kid, k.key)).collect(),
            fetched: Some(Instant::now()),
        };
        Self {
            cache: Arc::new(Mutex::new(cache)),
            ..j
        }
    }

    /// The key for `kid`: from the cache, else after one (rate-bounded)
    /// refetch. Concurrent misses share one fetch (the lock is held across it).
    pub async fn key(&self, kid: &str) -> Result<DecodingKey, Lookup> {
        let mut cache = self.cache.lock().await;
        if let Some(k) = cache.keys.get(kid) {
            return Ok(k.clone());
        }
        let due = cache
            .fetched
            .is_none_or(|t| t.elapsed() >= self.min_refetch);
        if due {
            cache.fetched = Some(Instant::now());
            match self.fetch().await {
                Ok(keys) => {
                    metrics::counter!(FETCH_METRIC, "outcome" => "ok").increment(1);
                    cache.keys = keys.into_iter().map(|k| (k.kid, k.key)).collect();
                }
                Err(e) => {
                    metrics::counter!(FETCH_METRIC, "outcome" => "error").increment(1);
                    tracing::warn!(error = %e, url = %self.url, "cannot fetch identity's JWKS");
                    if cache.keys.is_empty() {
                        return Err(Lookup::Unavailable);
                    }
                }
            }
        }
        if cache.keys.is_empty() {
            return Err(Lookup::Unavailable);
        }
        cache.keys.get(kid).cloned().ok_or(Lookup::Unknown)
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let response = self
            .http
            .get(&self.url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("identity answered {}", response.status()));
        }
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        parse(&body).map_err(|e| e.to_string())
    }
}

/// Counter of JWKS fetches, labelled `outcome`.
pub const FETCH_METRIC: &str = "bff_jwks_fetches_total";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ed25519_keys_with_a_kid_are_kept() {
        let body = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","kid":"a","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"RSA","kid":"r","n":"x","e":"AQAB"},
            {"kty":"OKP","crv":"X25519","kid":"x","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
        ]}"#;
        let keys = parse(body).unwrap();
        assert_eq!(
            keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            ["a"]
        );
        assert!(parse(b"not json").is_err());
    }

    #[tokio::test]
    async fn an_unknown_kid_is_refetched_at_most_once_per_bound() {
        // Nothing listens on port 9: every fetch fails, and is counted by time.
        let j = Jwks::new(
            "http://127.0.0.1:9",
            reqwest::Client::new(),
            Duration::from_secs(3600),
        );
        assert_eq!(j.key("k1").await.err(), Some(Lookup::Unavailable));
        let first = j.cache.lock().await.fetched;
        assert!(first.is_some());
        // Within the bound: no second fetch (the timestamp is unchanged).
        assert_eq!(j.key("k2").await.err(), Some(Lookup::Unavailable));
        assert_eq!(j.cache.lock().await.fetched, first);
    }
}
