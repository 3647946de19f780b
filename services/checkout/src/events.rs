//! The consumer of `checkout.events`: each event from payments becomes one
//! saga transition (inbox row + state + history + next command, one
//! transaction), then is acked. An unreadable message is dead-lettered; a
//! database failure requeues it.

use storefront_kit::amqp::{Handled, Incoming};
use storefront_payments::contract::Event;

use crate::orchestrator::Orchestrator;
use crate::saga::{Input, Wake};
use crate::store::Applied;

/// Counter of events handled, by kind and outcome.
pub const EVENTS_METRIC: &str = "checkout_events_total";

/// The saga input an event is.
pub fn input_of(event: &Event) -> Input {
    match event {
        Event::PaymentAuthorized { .. } => Input::PaymentAuthorized,
        Event::PaymentDeclined { .. } => Input::PaymentDeclined,
        Event::PaymentCaptured { .. } => Input::PaymentCaptured,
        Event::PaymentCaptureFailed { .. } => Input::PaymentCaptureFailed,
        Event::PaymentVoided { .. } => Input::PaymentVoided,
    }
}

/// Handles one delivery.
pub async fn handle(orchestrator: &Orchestrator, message: Incoming) -> Handled {
    let Some(id) = message.id else {
        tracing::error!(kind = ?message.kind, "event without a UUID message_id; dead-lettering");
        return Handled::Reject;
    };
    let event: Event = match serde_json::from_slice(&message.payload) {
        Ok(e) => e,
        Err(error) => {
            tracing::error!(%id, %error, "unreadable event; dead-lettering");
            return Handled::Reject;
        }
    };
    let order_id = event.order_id();
    let applied = orchestrator
        .store
        .apply_event(order_id, input_of(&event), (id, event.kind()))
        .await;
    let label = match &applied {
        Ok(Applied::Moved(_)) => "moved",
        Ok(Applied::Ignored) => "ignored",
        Ok(Applied::Duplicate) => "duplicate",
        Ok(Applied::Missing) => "unknown_order",
        Ok(Applied::Conflict) => "conflict",
        Err(_) => "error",
    };
    metrics::counter!(EVENTS_METRIC, "kind" => event.kind(), "outcome" => label).increment(1);
    match applied {
        Ok(Applied::Moved(t)) => {
            if t.wake == Wake::Now {
                orchestrator.kick(order_id);
            }
            Handled::Ack
        }
        Ok(Applied::Missing) => {
            tracing::warn!(%id, %order_id, "event for an unknown order; dropped");
            Handled::Ack
        }
        Ok(Applied::Ignored | Applied::Duplicate) => Handled::Ack,
        Ok(Applied::Conflict) | Err(_) => {
            tracing::warn!(%id, %order_id, outcome = label, "event not applied; requeueing");
            Handled::Retry
        }
    }
}
