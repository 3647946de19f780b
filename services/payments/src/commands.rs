//! The consumer of `payments.commands`: each delivery becomes one store
//! transaction (inbox row + effect), then is acked. A message that can
//! never be handled is dead-lettered; a database failure requeues it.

use storefront_kit::amqp::{Handled, Incoming};

use crate::contract::Command;
use crate::store::{Outcome, Store};

/// Counter of commands handled, by kind and outcome.
pub const COMMANDS_METRIC: &str = "payments_commands_total";

/// Handles one delivery.
pub async fn handle(store: &Store, message: Incoming) -> Handled {
    let Some(id) = message.id else {
        tracing::error!(kind = ?message.kind, "command without a UUID message_id; dead-lettering");
        return Handled::Reject;
    };
    let command: Command = match serde_json::from_slice(&message.payload) {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%id, %error, "unreadable command; dead-lettering");
            return Handled::Reject;
        }
    };
    match store.handle_command(id, &command).await {
        Ok(outcome) => {
            metrics::counter!(COMMANDS_METRIC, "kind" => command.kind(), "outcome" => outcome.label())
                .increment(1);
            if outcome == Outcome::Duplicate {
                tracing::info!(%id, kind = command.kind(), "duplicate command skipped");
            }
            Handled::Ack
        }
        Err(error) => {
            tracing::warn!(%id, %error, "command failed; requeueing");
            Handled::Retry
        }
    }
}
