//! The two providers' webhook bodies: built by the simulated provider,
//! parsed by the webhook handlers into one [`ProviderEvent`]. Pure, so the
//! round trip is unit-tested.
//!
//! A body is refused (400) before any query if any of its strings or keys
//! holds a NUL character: Postgres can store NUL in neither `text` nor
//! `jsonb`, and no provider sends one.

use serde::Deserialize;
use serde::de::Error as _;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::contract::Provider;
use crate::payment::Input;

/// What a webhook says happened, in the payment state machine's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The authorization succeeded.
    Authorized,
    /// The authorization was refused.
    Declined,
    /// The capture succeeded.
    Captured,
    /// The capture failed.
    CaptureFailed,
    /// The authorization was released.
    Voided,
}

impl Kind {
    /// The payment state machine's input for it.
    pub fn input(self) -> Input {
        match self {
            Self::Authorized => Input::Authorized,
            Self::Declined => Input::Declined,
            Self::Captured => Input::Captured,
            Self::CaptureFailed => Input::CaptureFailed,
            Self::Voided => Input::Voided,
        }
    }

    /// The provider's event type for it.
    pub fn event_type(self, provider: Provider) -> &'static str {
        match (provider, self) {
            (Provider::Stripe, Self::Authorized) => "payment_intent.amount_capturable_updated",
            (Provider::Stripe, Self::Declined) => "payment_intent.payment_failed",
            (Provider::Stripe, Self::Captured) => "payment_intent.succeeded",
            (Provider::Stripe, Self::CaptureFailed) => "charge.failed",
            (Provider::Stripe, Self::Voided) => "payment_intent.canceled",
            (Provider::Paypal, Self::Authorized) => "PAYMENT.AUTHORIZATION.CREATED",
            (Provider::Paypal, Self::Declined) => "PAYMENT.AUTHORIZATION.DENIED",
            (Provider::Paypal, Self::Captured) => "PAYMENT.CAPTURE.COMPLETED",
            (Provider::Paypal, Self::CaptureFailed) => "PAYMENT.CAPTURE.DENIED",
            (Provider::Paypal, Self::Voided) => "PAYMENT.AUTHORIZATION.VOIDED",
        }
    }

    /// The inverse of [`Kind::event_type`]; `None` for the many event types
    /// a provider sends that don't concern a payment's status.
    pub fn from_event_type(provider: Provider, event_type: &str) -> Option<Self> {
        [
            Self::Authorized,
            Self::Declined,
            Self::Captured,
            Self::CaptureFailed,
            Self::Voided,
        ]
        .into_iter()
        .find(|k| k.event_type(provider) == event_type)
    }
}

/// A webhook, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    /// The provider's event id: the dedupe key.
    pub event_id: String,
    /// The provider's event type, as sent.
    pub event_type: String,
    /// What it means, if it concerns a payment's status.
    pub kind: Option<Kind>,
    /// The provider's id of the payment session.
    pub provider_ref: String,
    /// The amount the event is about, as it states it (`None`: not stated).
    pub claimed: Option<Money>,
}

/// An amount in minor units and its ISO 4217 currency, upper case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    /// Minor units (cents).
    pub amount_cents: i64,
    /// `EUR`, ….
    pub currency: String,
}

impl Money {
    /// `amount_cents` of `currency` (case-insensitive).
    pub fn new(amount_cents: i64, currency: &str) -> Self {
        Self {
            amount_cents,
            currency: currency.trim().to_uppercase(),
        }
    }
}

/// The provider's id for a payment session (it would return it; the
/// simulator derives it).
pub fn intent_id(provider: Provider, payment_id: Uuid) -> String {
    match provider {
        Provider::Stripe => format!("pi_{}", payment_id.simple()),
        Provider::Paypal => format!("PAYID-{}", payment_id.simple().to_string().to_uppercase()),
    }
}

/// A new event id in the provider's style.
pub fn new_event_id(provider: Provider) -> String {
    let id = Uuid::new_v4().simple().to_string();
    match provider {
        Provider::Stripe => format!("evt_{id}"),
        Provider::Paypal => format!("WH-{}", id.to_uppercase()),
    }
}

/// The body the provider sends for `kind` on `intent`.
pub fn body(
    provider: Provider,
    event_id: &str,
    kind: Kind,
    intent: &str,
    amount_cents: i64,
    currency: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let value = match provider {
        Provider::Stripe => json!({
            "id": event_id,
            "object": "event",
            "type": kind.event_type(provider),
            "created": now.timestamp(),
            "data": {"object": {
                "id": intent,
                "object": "payment_intent",
                "amount": amount_cents,
                "currency": currency.to_lowercase(),
            }},
        }),
        Provider::Paypal => json!({
            "id": event_id,
            "event_type": kind.event_type(provider),
            "create_time": now.to_rfc3339(),
            "resource_type": match kind {
                Kind::Captured | Kind::CaptureFailed => "capture",
                _ => "authorization",
            },
            "resource": {
                "id": intent,
                "amount": {
                    "value": format!("{}.{:02}", amount_cents / 100, amount_cents % 100),
                    "currency_code": currency,
                },
            },
        }),
    };
    value.to_string()
}

#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    event_type: String,
    data: StripeData,
}

#[derive(Deserialize)]
struct StripeData {
    object: StripeObject,
}

#[derive(Deserialize)]
struct StripeObject {
    id: String,
    amount: Option<i64>,
    currency: Option<String>,
}

#[derive(Deserialize)]
struct PaypalEvent {
    id: String,
    event_type: String,
    resource: PaypalResource,
}

#[derive(Deserialize)]
struct PaypalResource {
    id: String,
    amount: Option<PaypalAmount>,
}

#[derive(Deserialize)]
struct PaypalAmount {
    value: String,
    currency_code: String,
}

/// PayPal's decimal amount (`"12.05"`, `"100"`) in minor units; `None`
/// unless it is plain digits with at most two decimals.
pub fn paypal_cents(value: &str) -> Option<i64> {
    let (units, fraction) = value.split_once('.').unwrap_or((value, "00"));
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(units, 15) || !digits(fraction, 2) || fraction.len() != 2 {
        return None;
    }
    units
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(fraction.parse::<i64>().ok()?)
}

/// Whether any string or key in `value` holds a NUL character.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Parses a (signature-checked) body into the event and the JSON value to
/// store; the error says what is wrong.
pub fn parse(provider: Provider, body: &[u8]) -> Result<(ProviderEvent, Value), serde_json::Error> {
    let value: Value = serde_json::from_slice(body)?;
    if holds_nul(&value) {
        return Err(serde_json::Error::custom(
            "the body holds a NUL character (\\u0000), which no event may contain",
        ));
    }
    let (event_id, event_type, provider_ref, claimed) = match provider {
        Provider::Stripe => {
            let e = StripeEvent::deserialize(&value)?;
            let o = e.data.object;
            let claimed = match (o.amount, o.currency) {
                (Some(amount), Some(currency)) => Some(Money::new(amount, &currency)),
                _ => None,
            };
            (e.id, e.event_type, o.id, claimed)
        }
        Provider::Paypal => {
            let e = PaypalEvent::deserialize(&value)?;
            let claimed = match e.resource.amount {
                Some(a) => Some(Money::new(
                    paypal_cents(&a.value).ok_or_else(|| {
                        serde_json::Error::custom(format!(
                            "resource.amount.value {:?} is not a decimal amount",
                            a.value
                        ))
                    })?,
                    &a.currency_code,
                )),
                None => None,
            };
            (e.id, e.event_type, e.resource.id, claimed)
        }
    };
    let event = ProviderEvent {
        kind: Kind::from_event_type(provider, &event_type),
        event_id,
        event_type,
        provider_ref,
        claimed,
    };
    Ok((event, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_the_simulator_builds_parse_back_for_both_providers() {
        let payment = Uuid::new_v4();
        for provider in [Provider::Stripe, Provider::Paypal] {
            for kind in [
                Kind::Authorized,
                Kind::Declined,
                Kind::Captured,
                Kind::CaptureFailed,
                Kind::Voided,
            ] {
                let intent = intent_id(provider, payment);
                let id = new_event_id(provider);
                let text = body(
                    provider,
                    &id,
                    kind,
                    &intent,
                    1290,
                    "EUR",
                    chrono::Utc::now(),
                );
                let (parsed, _) = parse(provider, text.as_bytes()).unwrap();
                assert_eq!(parsed.kind, Some(kind));
                assert_eq!(parsed.event_id, id);
                assert_eq!(parsed.provider_ref, intent);
                assert_eq!(parsed.claimed, Some(Money::new(1290, "EUR")));
            }
        }
    }

    #[test]
    fn unrelated_event_types_parse_without_a_kind() {
        let text = r#"{"id":"evt_1","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
        let (parsed, _) = parse(Provider::Stripe, text.as_bytes()).unwrap();
        assert_eq!(parsed.kind, None);
        assert_eq!(parsed.claimed, None);
        assert!(parse(Provider::Paypal, text.as_bytes()).is_err());
    }

    #[test]
    fn paypal_amounts_are_decimal_strings() {
        let text = body(
            Provider::Paypal,
            "WH-1",
            Kind::Captured,
            "PAYID-1",
            1205,
            "EUR",
            chrono::Utc::now(),
        );
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["resource"]["amount"]["value"], "12.05");
        assert_eq!(value["resource_type"], "capture");
    }

    #[test]
    fn paypal_amounts_parse_to_cents_and_junk_does_not() {
        assert_eq!(paypal_cents("12.05"), Some(1205));
        assert_eq!(paypal_cents("0.01"), Some(1));
        assert_eq!(paypal_cents("100"), Some(10_000));
        for junk in [
            "",
            ".",
            "1.",
            ".50",
            "1.5",
            "1.005",
            "-1.00",
            "+1.00",
            "1e3",
            "12,05",
            " 1.00",
            "9999999999999999.00",
        ] {
            assert_eq!(paypal_cents(junk), None, "{junk:?}");
        }
        let bad = r#"{"id":"WH-1","event_type":"PAYMENT.CAPTURE.COMPLETED",
            "resource":{"id":"PAYID-1","amount":{"value":"lots","currency_code":"EUR"}}}"#;
        assert!(parse(Provider::Paypal, bad.as_bytes()).is_err());
    }

    #[test]
    fn a_nul_character_anywhere_in_a_body_is_refused() {
        let bodies = [
            r#"{"id":"evt_\u0000","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#,
            r#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","x":["\u0000"]}}}"#,
            r#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1","k\u0000":1}}}"#,
        ];
        for body in bodies {
            let err = parse(Provider::Stripe, body.as_bytes()).unwrap_err();
            assert!(err.to_string().contains("NUL"), "{body}: {err}");
        }
        // An escaped backslash followed by "u0000" is six ordinary characters.
        let fine = r#"{"id":"evt_\\u0000","type":"x","data":{"object":{"id":"pi_1"}}}"#;
        assert!(parse(Provider::Stripe, fine.as_bytes()).is_ok());
        let raw = b"{\"id\":\"evt_\x00\",\"type\":\"x\",\"data\":{\"object\":{\"id\":\"p\"}}}";
        assert!(parse(Provider::Stripe, raw).is_err());
    }
}
