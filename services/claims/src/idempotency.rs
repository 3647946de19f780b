//! The idempotency contract's vocabulary: the `Idempotency-Key` request
//! header, the `Idempotent-Replayed` response header, and the one decision
//! — created, replayed or key reused — as a pure function of what the
//! database returned.

use axum::http::{HeaderMap, HeaderName};

/// Request header naming the operation; a retry sends the same value.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Response header set to `true` on a replayed response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key accepted; keys are stored and indexed, so they stay short.
pub const MAX_KEY_LEN: usize = 255;

/// A validated `Idempotency-Key`: 1–255 characters of `[A-Za-z0-9_.:-]`,
/// which covers UUIDs, ULIDs and `order-42:attempt-1` styles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why the header can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No `Idempotency-Key` header at all.
    #[error("the Idempotency-Key header is required for POST /claims")]
    Missing,
    /// Present but not a usable key; the string says which rule it broke.
    #[error("the Idempotency-Key header is malformed: {0}")]
    Malformed(&'static str),
}

impl IdempotencyKey {
    /// The key from `headers`; exactly one header must be present.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, KeyError> {
        let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
        let value = values.next().ok_or(KeyError::Missing)?;
        if values.next().is_some() {
            return Err(KeyError::Malformed("it was sent more than once"));
        }
        let text = value.to_str().map_err(|_| {
            KeyError::Malformed("it must be 1-255 characters of A-Z a-z 0-9 _ . : -")
        })?;
        Self::parse(text)
    }

    /// Validates a key's text.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        if text.is_empty() {
            return Err(KeyError::Malformed("it is empty"));
        }
        if text.len() > MAX_KEY_LEN {
            return Err(KeyError::Malformed("it is longer than 255 characters"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
        {
            return Err(KeyError::Malformed(
                "it may only contain A-Z a-z 0-9 _ . : -",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the database said about a key: the stored row and whether this
/// request's statement was the one that inserted it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Recorded {
    /// The claim the key is bound to.
    pub claim_id: uuid::Uuid,
    /// Fingerprint of the body the key was first used with.
    pub request_hash: String,
    /// The status first sent.
    pub response_status: i16,
    /// The body first sent, verbatim.
    pub response_body: String,
    /// True only for the request whose INSERT created the row.
    pub inserted: bool,
}

/// How a request with a key is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This request created the record: send the freshly rendered response.
    Created,
    /// The same request was seen before: send the stored response again.
    Replayed,
    /// The key is bound to a different request: refuse, change nothing.
    KeyReused,
}

impl Outcome {
    /// Decides from the stored record and this request's fingerprint.
    pub fn of(recorded: &Recorded, request_hash: &str) -> Self {
        if recorded.inserted {
            Self::Created
        } else if recorded.request_hash == request_hash {
            Self::Replayed
        } else {
            Self::KeyReused
        }
    }

    /// A label for logs and the outcome counter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Replayed => "replayed",
            Self::KeyReused => "key_reused",
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(IDEMPOTENCY_KEY, HeaderValue::from_bytes(v).unwrap());
        }
        map
    }

    #[test]
    fn usual_key_styles_are_accepted() {
        for key in [
            "3f2b8c1e-9a4d-4e0f-8b7a-2c6d1e5f9a0b",
            "01HZX3N6Q7R8S9T0V1W2X3Y4Z5",
            "order-42:attempt_1.retry",
            "a",
        ] {
            assert_eq!(IdempotencyKey::parse(key).unwrap().as_str(), key);
        }
        assert!(IdempotencyKey::parse(&"k".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn missing_header_is_missing_not_malformed() {
        assert_eq!(
            IdempotencyKey::from_headers(&HeaderMap::new()),
            Err(KeyError::Missing)
        );
        assert!(KeyError::Missing.to_string().contains("Idempotency-Key"));
    }

    #[test]
    fn empty_long_and_odd_keys_are_malformed() {
        for bad in [
            "".to_owned(),
            "k".repeat(MAX_KEY_LEN + 1),
            "has space".into(),
            "slash/y".into(),
            "quote\"".into(),
            "é".into(),
        ] {
            assert!(
                matches!(IdempotencyKey::parse(&bad), Err(KeyError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn non_ascii_header_bytes_and_repeated_headers_are_malformed() {
        assert!(matches!(
            IdempotencyKey::from_headers(&headers(&[b"caf\xe9"])),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            IdempotencyKey::from_headers(&headers(&[b"a", b"b"])),
            Err(KeyError::Malformed(_))
        ));
        assert_eq!(
            IdempotencyKey::from_headers(&headers(&[b"k-1"]))
                .unwrap()
                .as_str(),
            "k-1"
        );
    }

    fn recorded(inserted: bool, hash: &str) -> Recorded {
        Recorded {
            claim_id: uuid::Uuid::nil(),
            request_hash: hash.into(),
            response_status: 201,
            response_body: "{}".into(),
            inserted,
        }
    }

    #[test]
    fn outcome_follows_inserted_then_hash() {
        assert_eq!(Outcome::of(&recorded(true, "h"), "h"), Outcome::Created);
        assert_eq!(Outcome::of(&recorded(false, "h"), "h"), Outcome::Replayed);
        assert_eq!(
            Outcome::of(&recorded(false, "h"), "other"),
            Outcome::KeyReused
        );
    }
}
