//! The payments service's message contract: the commands it consumes and
//! the events it publishes, as JSON on RabbitMQ. Checkout (the only other
//! party) builds against these types, so a change here is a change on both
//! sides of the wire in one commit.
//!
//! Every message is one JSON object tagged by `"type"`; its id travels as
//! the AMQP `message_id` (the consumer's inbox key), its `"type"` also as
//! the AMQP `type`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The queue payments consumes commands from.
pub const COMMANDS_QUEUE: &str = "payments.commands";
/// The queue payments publishes its events to (checkout consumes it).
pub const EVENTS_QUEUE: &str = "checkout.events";

/// The two queue names as one deployment uses them: the constants above
/// behind an optional prefix (`AMQP_QUEUE_PREFIX`), so tests sharing one
/// broker don't consume each other's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queues {
    /// Commands to payments.
    pub commands: String,
    /// Events to checkout.
    pub events: String,
}

impl Queues {
    /// The queues under `prefix` ("" in the fleet).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            commands: format!("{prefix}{COMMANDS_QUEUE}"),
            events: format!("{prefix}{EVENTS_QUEUE}"),
        }
    }
}

/// Which payment provider's API (and webhook shape) a payment goes through.
#[derive(utoipa::ToSchema, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Stripe-like: `Stripe-Signature: t=…,v1=…`.
    Stripe,
    /// PayPal-like: `Paypal-Transmission-{Id,Time,Sig}`.
    Paypal,
}

impl Provider {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Paypal => "paypal",
        }
    }

    /// The inverse of [`Provider::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stripe" => Some(Self::Stripe),
            "paypal" => Some(Self::Paypal),
            _ => None,
        }
    }
}

/// What checkout asks of payments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Open a payment session for the order and authorize the amount.
    AuthorizePayment {
        /// The order (one payment per order).
        order_id: Uuid,
        /// What to authorize, in minor units.
        amount_cents: i64,
        /// ISO 4217, e.g. `EUR`.
        currency: String,
        /// The card (a sandbox test number; a token in real life).
        card_number: String,
        /// Which provider to go through.
        provider: Provider,
    },
    /// Capture the authorized amount.
    CapturePayment {
        /// The order.
        order_id: Uuid,
    },
    /// Release the authorization (or cancel a session not yet authorized).
    VoidPayment {
        /// The order.
        order_id: Uuid,
    },
}

impl Command {
    /// The `type` tag, also sent as the AMQP `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AuthorizePayment { .. } => "authorize_payment",
            Self::CapturePayment { .. } => "capture_payment",
            Self::VoidPayment { .. } => "void_payment",
        }
    }

    /// The order it concerns.
    pub fn order_id(&self) -> Uuid {
        match self {
            Self::AuthorizePayment { order_id, .. }
            | Self::CapturePayment { order_id }
            | Self::VoidPayment { order_id } => *order_id,
        }
    }
}

/// What payments tells checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The amount is held on the card.
    PaymentAuthorized {
        /// The order.
        order_id: Uuid,
        /// The payment session.
        payment_id: Uuid,
    },
    /// The provider refused the authorization; nothing is held.
    PaymentDeclined {
        /// The order.
        order_id: Uuid,
        /// The payment session.
        payment_id: Uuid,
    },
    /// The money moved.
    PaymentCaptured {
        /// The order.
        order_id: Uuid,
        /// The payment session.
        payment_id: Uuid,
        /// What was captured.
        amount_cents: i64,
    },
    /// The capture failed; the authorization still holds until voided.
    PaymentCaptureFailed {
        /// The order.
        order_id: Uuid,
        /// The payment session.
        payment_id: Uuid,
    },
    /// Nothing is held any more.
    PaymentVoided {
        /// The order.
        order_id: Uuid,
        /// The payment session.
        payment_id: Uuid,
    },
}

impl Event {
    /// The `type` tag, also sent as the AMQP `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PaymentAuthorized { .. } => "payment_authorized",
            Self::PaymentDeclined { .. } => "payment_declined",
            Self::PaymentCaptured { .. } => "payment_captured",
            Self::PaymentCaptureFailed { .. } => "payment_capture_failed",
            Self::PaymentVoided { .. } => "payment_voided",
        }
    }

    /// The order it concerns.
    pub fn order_id(&self) -> Uuid {
        match self {
            Self::PaymentAuthorized { order_id, .. }
            | Self::PaymentDeclined { order_id, .. }
            | Self::PaymentCaptured { order_id, .. }
            | Self::PaymentCaptureFailed { order_id, .. }
            | Self::PaymentVoided { order_id, .. } => *order_id,
        }
    }
}

/// `POST /lab/sign/{provider}` body (lab only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignRequest {
    /// The exact body to sign.
    pub body: String,
    /// Unix seconds to sign at (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
}

/// `POST /lab/sign/{provider}`'s answer: the headers to send with the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed {
    /// Header name → value, as the provider would send them.
    pub headers: std::collections::BTreeMap<String, String>,
}

/// `PUT /lab/outbox` body: the outbox experiment's switches (lab only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxSwitches {
    /// The control arm: publish events directly, before the commit.
    pub dual_write: bool,
    /// How long a transaction that wrote an event waits before committing
    /// (default 0; at most 1.5 s, the lab's `MAX_HOLD`).
    #[serde(default)]
    pub hold_ms: u64,
}

/// What `GET`/`PUT /lab/outbox` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxSettings {
    /// The control arm's naive dual write is on.
    pub dual_write: bool,
    /// The hold before commit, in milliseconds.
    pub hold_ms: u64,
    /// Transactions inside the hold right now.
    pub held: usize,
    /// Events published directly since the process started.
    pub published_directly: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_are_tagged_json_with_their_kind() {
        let id = Uuid::nil();
        let command = Command::AuthorizePayment {
            order_id: id,
            amount_cents: 1290,
            currency: "EUR".into(),
            card_number: "4242424242424242".into(),
            provider: Provider::Paypal,
        };
        let value = serde_json::to_value(&command).unwrap();
        assert_eq!(value["type"], command.kind());
        assert_eq!(value["provider"], "paypal");
        assert_eq!(serde_json::from_value::<Command>(value).unwrap(), command);
    }

    #[test]
    fn events_round_trip_and_unknown_fields_are_refused() {
        let event = Event::PaymentCaptured {
            order_id: Uuid::nil(),
            payment_id: Uuid::nil(),
            amount_cents: 5,
        };
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value["type"], "payment_captured");
        assert_eq!(serde_json::from_value::<Event>(value).unwrap(), event);
        let extra = json!({"type": "payment_voided", "order_id": Uuid::nil(), "payment_id": Uuid::nil(), "x": 1});
        assert!(serde_json::from_value::<Event>(extra).is_err());
    }
}
