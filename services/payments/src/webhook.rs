//! The two providers' webhook bodies: built by the simulated provider,
//! parsed by the webhook handlers into one [`ProviderEvent`]. Pure, so the
//! round trip is unit-tested.

use serde::Deserialize;
use serde_json::json;
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
    object: Resource,
}

#[derive(Deserialize)]
struct Resource {
    id: String,
}

#[derive(Deserialize)]
struct PaypalEvent {
    id: String,
    event_type: String,
    resource: Resource,
}

/// Parses a (signature-checked) body; the error says what is missing.
pub fn parse(provider: Provider, body: &[u8]) -> Result<ProviderEvent, serde_json::Error> {
    let (event_id, event_type, provider_ref) = match provider {
        Provider::Stripe => {
            let e: StripeEvent = serde_json::from_slice(body)?;
            (e.id, e.event_type, e.data.object.id)
        }
        Provider::Paypal => {
            let e: PaypalEvent = serde_json::from_slice(body)?;
            (e.id, e.event_type, e.resource.id)
        }
    };
    Ok(ProviderEvent {
        kind: Kind::from_event_type(provider, &event_type),
        event_id,
        event_type,
        provider_ref,
    })
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
                let parsed = parse(provider, text.as_bytes()).unwrap();
                assert_eq!(parsed.kind, Some(kind));
                assert_eq!(parsed.event_id, id);
                assert_eq!(parsed.provider_ref, intent);
            }
        }
    }

    #[test]
    fn unrelated_event_types_parse_without_a_kind() {
        let text = r#"{"id":"evt_1","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
        let parsed = parse(Provider::Stripe, text.as_bytes()).unwrap();
        assert_eq!(parsed.kind, None);
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
}
