//! Request headers that more than one service reads, read once: the
//! customer the BFF verified (`X-User-Id`) and the client's
//! `Idempotency-Key`. Each service maps the errors to its own problem
//! responses.

use axum::http::{HeaderMap, HeaderName};
use uuid::Uuid;

/// Request header the BFF sets to the verified user's id.
pub const USER_ID: HeaderName = HeaderName::from_static("x-user-id");
/// Request header naming the operation; a retry sends the same value.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Response header set to `true` on a replayed response.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// Longest key accepted; keys are stored and indexed, so they stay short.
pub const MAX_KEY_LEN: usize = 255;

/// `X-User-Id` is present but not exactly one UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the X-User-Id header must be one UUID")]
pub struct UserIdMalformed;

/// The customer the BFF verified, if the request came through it: absent →
/// `None` (the lab's own calls); anything but exactly one UUID is refused.
pub fn verified_customer(headers: &HeaderMap) -> Result<Option<Uuid>, UserIdMalformed> {
    let mut values = headers.get_all(USER_ID).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(UserIdMalformed);
    }
    let text = value.to_str().map_err(|_| UserIdMalformed)?;
    Uuid::try_parse(text).map(Some).map_err(|_| UserIdMalformed)
}

/// A validated `Idempotency-Key`: 1–255 characters of `[A-Za-z0-9_.:-]`,
/// which covers UUIDs, ULIDs and `order-42:attempt-1` styles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why the header can't be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// No `Idempotency-Key` header at all.
    #[error("the Idempotency-Key header is required")]
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

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn x_user_id_is_absent_or_exactly_one_uuid() {
        let id = Uuid::new_v4();
        let mut headers = HeaderMap::new();
        assert_eq!(verified_customer(&headers), Ok(None));
        headers.insert(USER_ID, HeaderValue::from_str(&id.to_string()).unwrap());
        assert_eq!(verified_customer(&headers), Ok(Some(id)));
        headers.append(USER_ID, HeaderValue::from_str(&id.to_string()).unwrap());
        assert_eq!(verified_customer(&headers), Err(UserIdMalformed));
        for bad in ["alice", "", "1", "00000000-0000-0000-0000-00000000000g"] {
            headers.insert(USER_ID, HeaderValue::from_static(bad));
            assert_eq!(verified_customer(&headers), Err(UserIdMalformed), "{bad:?}");
        }
    }

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
}
