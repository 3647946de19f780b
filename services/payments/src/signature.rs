//! Webhook signatures in the two providers' shapes, as pure functions of
//! (secret, headers, body, now): the simulator signs with them, the webhook
//! handlers verify with them, and the tests step `now`.
//!
//! - Stripe-like: `Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret,
//!   "<t>.<body>")>`; several `v1` entries may appear (secret rotation) and
//!   one matching is enough. The timestamp must be within the tolerance of
//!   now, so a captured request can't be replayed later.
//! - PayPal-like: `Paypal-Transmission-Id`, `Paypal-Transmission-Time`
//!   (RFC 3339) and `Paypal-Transmission-Sig = hex HMAC-SHA256(secret,
//!   "<id>|<time>|<hex sha256(body)>")`. (Real PayPal signs with a
//!   certificate; an HMAC keeps the lab self-contained while keeping the
//!   shape.) The body is bound by a cryptographic hash of its exact bytes:
//!   the CRC-32 PayPal's shape suggests can be forced to any value by
//!   changing four bytes, so one captured delivery's headers would sign
//!   any body with a matching CRC (issue 11, item 1).
//!
//! A valid signature says who sent a body and when, not that it is the
//! first time: the handlers also accept a transmission id (PayPal) or an
//! event id (both) once, and confirm the claim with the provider's own
//! record before moving money state (see `store::Store::handle_webhook`).
//!
//! Comparisons are constant-time (`Mac::verify_slice`).

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Stripe's signature header.
pub const STRIPE_SIGNATURE: &str = "stripe-signature";
/// PayPal's transmission id header.
pub const PAYPAL_TRANSMISSION_ID: &str = "paypal-transmission-id";
/// PayPal's transmission time header.
pub const PAYPAL_TRANSMISSION_TIME: &str = "paypal-transmission-time";
/// PayPal's signature header.
pub const PAYPAL_TRANSMISSION_SIG: &str = "paypal-transmission-sig";
/// The longest transmission id accepted (it is stored, once per delivery).
pub const MAX_TRANSMISSION_ID: usize = 128;

/// Why a webhook's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A signature header is absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A header is present but unreadable.
    #[error("malformed {0} header")]
    Malformed(&'static str),
    /// The signature doesn't match the body: forged, or another secret.
    #[error("signature does not match")]
    Mismatch,
    /// Signed too long ago (or in the future): a replay, or a wrong clock.
    #[error("timestamp is {age_secs} s from now, beyond the {tolerance_secs} s tolerance")]
    Stale {
        /// now − timestamp (negative: in the future).
        age_secs: i64,
        /// The tolerance.
        tolerance_secs: i64,
    },
}

impl SignatureError {
    /// Whether the request is malformed (400) rather than unauthenticated (401).
    pub fn is_malformed(&self) -> bool {
        matches!(self, Self::Missing(_) | Self::Malformed(_))
    }
}

fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length")
}

fn within(t: i64, now: i64, tolerance_secs: i64) -> Result<(), SignatureError> {
    let age_secs = now - t;
    if age_secs.abs() > tolerance_secs {
        return Err(SignatureError::Stale {
            age_secs,
            tolerance_secs,
        });
    }
    Ok(())
}

/// The `Stripe-Signature` value for `body` signed at `t`.
pub fn stripe_header(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(format!("{t}.").as_bytes());
    m.update(body);
    format!("t={t},v1={}", hex::encode(m.finalize().into_bytes()))
}

/// Verifies a `Stripe-Signature` header against `body` at time `now`.
pub fn verify_stripe(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    const NAME: &str = "Stripe-Signature";
    let header = header.ok_or(SignatureError::Missing(NAME))?;
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => {
                t = Some(
                    v.parse::<i64>()
                        .map_err(|_| SignatureError::Malformed(NAME))?,
                )
            }
            Some(("v1", v)) => {
                signatures.push(hex::decode(v).map_err(|_| SignatureError::Malformed(NAME))?)
            }
            Some(_) => {} // other schemes (v0) are ignored, as Stripe's libraries do
            None => return Err(SignatureError::Malformed(NAME)),
        }
    }
    let t = t.ok_or(SignatureError::Malformed(NAME))?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed(NAME));
    }
    let mut m = mac(secret);
    m.update(format!("{t}.").as_bytes());
    m.update(body);
    let matches = signatures
        .iter()
        .any(|sig| m.clone().verify_slice(sig).is_ok());
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    within(t, now, tolerance_secs)
}

/// Hex SHA-256 of the exact body bytes: what binds a PayPal-like signature
/// (and a stored transmission) to its body.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// The MAC over what a PayPal-like signature covers.
fn paypal_mac(secret: &[u8], transmission_id: &str, time: &str, body: &[u8]) -> HmacSha256 {
    let mut m = mac(secret);
    m.update(format!("{transmission_id}|{time}|{}", body_digest(body)).as_bytes());
    m
}

/// The PayPal-like signature of `body` for a transmission id and time.
pub fn paypal_signature(secret: &[u8], transmission_id: &str, time: &str, body: &[u8]) -> String {
    hex::encode(
        paypal_mac(secret, transmission_id, time, body)
            .finalize()
            .into_bytes(),
    )
}

/// The three PayPal-like headers as received.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaypalHeaders<'a> {
    /// `Paypal-Transmission-Id`.
    pub transmission_id: Option<&'a str>,
    /// `Paypal-Transmission-Time`, RFC 3339.
    pub transmission_time: Option<&'a str>,
    /// `Paypal-Transmission-Sig`, hex.
    pub signature: Option<&'a str>,
}

/// Verifies PayPal-like headers against `body` at time `now`.
pub fn verify_paypal(
    secret: &[u8],
    headers: PaypalHeaders<'_>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let id = headers
        .transmission_id
        .ok_or(SignatureError::Missing("Paypal-Transmission-Id"))?;
    let time = headers
        .transmission_time
        .ok_or(SignatureError::Missing("Paypal-Transmission-Time"))?;
    let sig = headers
        .signature
        .ok_or(SignatureError::Missing("Paypal-Transmission-Sig"))?;
    let t = chrono::DateTime::parse_from_rfc3339(time)
        .map_err(|_| SignatureError::Malformed("Paypal-Transmission-Time"))?
        .timestamp();
    let sig = hex::decode(sig).map_err(|_| SignatureError::Malformed("Paypal-Transmission-Sig"))?;
    if id.is_empty() || id.len() > MAX_TRANSMISSION_ID {
        return Err(SignatureError::Malformed("Paypal-Transmission-Id"));
    }
    paypal_mac(secret, id, time, body)
        .verify_slice(&sig)
        .map_err(|_| SignatureError::Mismatch)?;
    within(t, now, tolerance_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    const NOW: i64 = 1_700_000_000;

    #[test]
    fn stripe_signature_made_by_the_simulator_verifies() {
        let header = stripe_header(SECRET, NOW - 10, BODY);
        assert_eq!(verify_stripe(SECRET, Some(&header), BODY, NOW, 300), Ok(()));
    }

    #[test]
    fn stripe_forgeries_are_refused() {
        let header = stripe_header(SECRET, NOW, BODY);
        let tampered = br#"{"id":"evt_1","type":"payment_intent.canceled"}"#;
        assert_eq!(
            verify_stripe(SECRET, Some(&header), tampered, NOW, 300),
            Err(SignatureError::Mismatch)
        );
        let other = stripe_header(b"another secret", NOW, BODY);
        assert_eq!(
            verify_stripe(SECRET, Some(&other), BODY, NOW, 300),
            Err(SignatureError::Mismatch)
        );
        // Moving the timestamp invalidates the signature, so a replay can't
        // be freshened.
        let moved = header.replace(&format!("t={NOW}"), &format!("t={}", NOW + 5));
        assert_eq!(
            verify_stripe(SECRET, Some(&moved), BODY, NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stripe_stale_or_future_timestamps_are_refused_even_when_signed() {
        let old = stripe_header(SECRET, NOW - 301, BODY);
        assert!(matches!(
            verify_stripe(SECRET, Some(&old), BODY, NOW, 300),
            Err(SignatureError::Stale { age_secs: 301, .. })
        ));
        let future = stripe_header(SECRET, NOW + 301, BODY);
        assert!(matches!(
            verify_stripe(SECRET, Some(&future), BODY, NOW, 300),
            Err(SignatureError::Stale { .. })
        ));
    }

    #[test]
    fn stripe_accepts_any_matching_v1_and_rejects_garbage() {
        let good = stripe_header(SECRET, NOW, BODY);
        let v1 = good.split_once(",v1=").unwrap().1;
        let rotated = format!("t={NOW},v1={},v1={v1}", "00".repeat(32));
        assert_eq!(
            verify_stripe(SECRET, Some(&rotated), BODY, NOW, 300),
            Ok(())
        );
        for bad in ["", "t=abc,v1=00", "v1=00", "t=1", "t=1,v1=zz", "garbage"] {
            let err = verify_stripe(SECRET, Some(bad), BODY, NOW, 300).unwrap_err();
            assert!(err.is_malformed(), "{bad:?}: {err}");
        }
        assert_eq!(
            verify_stripe(SECRET, None, BODY, NOW, 300),
            Err(SignatureError::Missing("Stripe-Signature"))
        );
    }

    fn paypal(time: &str, sig: &str) -> Result<(), SignatureError> {
        let headers = PaypalHeaders {
            transmission_id: Some("tx-1"),
            transmission_time: Some(time),
            signature: Some(sig),
        };
        verify_paypal(SECRET, headers, BODY, NOW, 300)
    }

    #[test]
    fn paypal_signature_verifies_and_forgeries_fail() {
        let time = chrono::DateTime::from_timestamp(NOW - 5, 0)
            .unwrap()
            .to_rfc3339();
        let sig = paypal_signature(SECRET, "tx-1", &time, BODY);
        assert_eq!(paypal(&time, &sig), Ok(()));
        let forged = paypal_signature(b"guess", "tx-1", &time, BODY);
        assert_eq!(paypal(&time, &forged), Err(SignatureError::Mismatch));
        let other_body = paypal_signature(SECRET, "tx-1", &time, b"{}");
        assert_eq!(paypal(&time, &other_body), Err(SignatureError::Mismatch));
    }

    #[test]
    fn paypal_headers_of_one_body_do_not_sign_another_with_the_same_crc32() {
        // A classic CRC-32 collision: the two bodies differ, their CRCs don't.
        let genuine = br#"{"x":"plumless"}"#;
        let forged = br#"{"x":"buckeroo"}"#;
        assert_eq!(crc32fast::hash(genuine), crc32fast::hash(forged));
        let time = chrono::DateTime::from_timestamp(NOW, 0)
            .unwrap()
            .to_rfc3339();
        let sig = paypal_signature(SECRET, "tx-1", &time, genuine);
        let headers = PaypalHeaders {
            transmission_id: Some("tx-1"),
            transmission_time: Some(&time),
            signature: Some(&sig),
        };
        assert_eq!(verify_paypal(SECRET, headers, genuine, NOW, 300), Ok(()));
        assert_eq!(
            verify_paypal(SECRET, headers, forged, NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn paypal_stale_and_malformed_are_refused() {
        let old = chrono::DateTime::from_timestamp(NOW - 3600, 0)
            .unwrap()
            .to_rfc3339();
        let sig = paypal_signature(SECRET, "tx-1", &old, BODY);
        assert!(matches!(
            paypal(&old, &sig),
            Err(SignatureError::Stale { .. })
        ));
        assert!(paypal("yesterday", &sig).unwrap_err().is_malformed());
        assert!(paypal(&old, "not-hex").unwrap_err().is_malformed());
        let long_id = "t".repeat(MAX_TRANSMISSION_ID + 1);
        let headers = PaypalHeaders {
            transmission_id: Some(&long_id),
            transmission_time: Some(&old),
            signature: Some(&sig),
        };
        assert!(
            verify_paypal(SECRET, headers, BODY, NOW, 300)
                .unwrap_err()
                .is_malformed()
        );
        let missing = verify_paypal(SECRET, PaypalHeaders::default(), BODY, NOW, 300);
        assert_eq!(
            missing,
            Err(SignatureError::Missing("Paypal-Transmission-Id"))
        );
    }
}
