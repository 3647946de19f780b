//! Publishing with publisher confirms: one batch, one result per message,
//! the trace context in the headers.

use std::collections::HashSet;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use uuid::Uuid;

use super::declare_queue;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Becomes the AMQP `message_id`: the consumer's inbox key.
    pub id: Uuid,
    /// The destination queue.
    pub queue: String,
    /// Becomes the AMQP `type`, for logs and routing in the consumer.
    pub kind: String,
    /// JSON bytes.
    pub payload: Vec<u8>,
    /// The W3C `traceparent` the message continues, sent as the AMQP
    /// header of that name; `None` sends the publishing span's, if any.
    /// The outbox stores the enqueuing request's, since its relay
    /// publishes outside any request.
    pub traceparent: Option<String>,
}

/// Why one message of a batch was not confirmed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    /// The broker nacked it (it could not take responsibility for it).
    #[error("the broker nacked the message")]
    Nacked,
    /// No queue took it (`mandatory` returned it).
    #[error("unroutable: {0}")]
    Returned(String),
}

/// A confirm-mode channel. A broken channel or connection surfaces as an
/// `Err` from [`Publisher::publish_batch`] (throw the publisher away and
/// reconnect); a message the broker refused is a per-message [`Refused`].
pub struct Publisher {
    /// In confirm mode: every publish is acked or nacked by the broker.
    channel: Channel,
    /// Queues declared on this channel already, so a batch doesn't redeclare.
    declared: HashSet<String>,
}

impl Publisher {
    /// Opens a channel on `connection` and puts it in confirm mode.
    pub async fn open(connection: &Connection) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            declared: HashSet::new(),
        })
    }

    /// Publishes every message (persistent, mandatory), then waits for all
    /// the broker's confirms: one round trip per batch, not per message.
    /// The result has one entry per message, in order.
    pub async fn publish_batch(
        &mut self,
        batch: &[Outgoing],
    ) -> Result<Vec<Result<(), Refused>>, lapin::Error> {
        let mut pending = Vec::with_capacity(batch.len());
        for message in batch {
            if !self.declared.contains(&message.queue) {
                declare_queue(&self.channel, &message.queue).await?;
                self.declared.insert(message.queue.clone());
            }
            let mut properties = BasicProperties::default()
                .with_message_id(message.id.to_string().into())
                .with_type(message.kind.as_str().into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2);
            let traceparent = message
                .traceparent
                .clone()
                .or_else(crate::telemetry::current_traceparent);
            if let Some(traceparent) = traceparent {
                properties = properties.with_headers(trace_headers(traceparent));
            }
            let confirm = self
                .channel
                .basic_publish(
                    "".into(),
                    message.queue.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &message.payload,
                    properties,
                )
                .await?;
            pending.push(confirm);
        }
        let mut results = Vec::with_capacity(pending.len());
        for confirm in pending {
            results.push(match confirm.await? {
                Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
                Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                    Err(Refused::Returned(returned.reply_text.as_str().to_owned()))
                }
                Confirmation::Nack(None) => Err(Refused::Nacked),
            });
        }
        Ok(results)
    }
}

/// AMQP headers carrying `traceparent`.
fn trace_headers(traceparent: String) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        crate::telemetry::TRACEPARENT.into(),
        AMQPValue::LongString(traceparent.into()),
    );
    headers
}
