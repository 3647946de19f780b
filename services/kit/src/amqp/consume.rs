//! Consuming with manual acks: the handler's verdict acks, requeues or
//! dead-letters each message; the consumer reconnects until stopped and
//! tells readiness whether it is connected.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::{RETRY_PAUSE, connect_with_retry, declare_queue};
use crate::checks::Check;

/// The `traceparent` header of a delivery, if it has a readable one.
fn traceparent_of(properties: &BasicProperties) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(crate::telemetry::TRACEPARENT)? {
        AMQPValue::LongString(value) => std::str::from_utf8(value.as_bytes())
            .ok()
            .map(str::to_owned),
        _ => None,
    }
}

/// A message as a consumer's handler sees it.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The AMQP `message_id`, if it is a UUID (the inbox key).
    pub id: Option<Uuid>,
    /// The AMQP `type`.
    pub kind: Option<String>,
    /// The body.
    pub payload: Vec<u8>,
    /// The broker delivered it before (to us or to a consumer that died).
    pub redelivered: bool,
}

/// What a handler decided; the consumer acks accordingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Done (or a duplicate): remove it from the queue.
    Ack,
    /// Failed for a reason that may pass (database down): requeue it.
    Retry,
    /// It can never be handled (unparseable): dead-letter it.
    Reject,
}

/// Longest the readiness probe waits for the broker to answer. A paused
/// (SIGSTOPped) broker keeps its TCP connections open and nothing notices
/// until the heartbeat times out a minute later, so `/ready` must ask.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether a consumer is connected and consuming, and whether the broker
/// still answers, for `/ready` (issue 12, defect g: `/ready` stayed 200
/// while RabbitMQ was paused).
#[derive(Debug, Clone, Default)]
pub struct Connected(Arc<ConnectedInner>);

/// The state behind [`Connected`].
#[derive(Debug, Default)]
struct ConnectedInner {
    /// Set while consuming.
    up: AtomicBool,
    /// A spare channel on the consumer's connection and its queue: the
    /// probe passively declares the queue on it, a round trip to the broker.
    probe: std::sync::Mutex<Option<(Channel, String)>>,
}

impl Connected {
    /// Records the state.
    pub fn set(&self, up: bool) {
        self.0.up.store(up, Ordering::Relaxed);
        if !up {
            *self.probe_slot() = None;
        }
    }

    /// Reads the state.
    pub fn get(&self) -> bool {
        self.0.up.load(Ordering::Relaxed)
    }

    /// Gives the probe a channel on the live connection and a queue that
    /// exists (a passive declare of a missing queue closes the channel).
    pub fn attach_probe(&self, channel: Channel, queue: &str) {
        *self.probe_slot() = Some((channel, queue.to_owned()));
    }

    /// The probe's slot, surviving a poisoned lock (it holds no invariant).
    fn probe_slot(&self) -> std::sync::MutexGuard<'_, Option<(Channel, String)>> {
        self.0
            .probe
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the broker answers a passive declare within `timeout`;
    /// `Err` says why not.
    pub async fn probe(&self, timeout: Duration) -> Result<(), String> {
        if !self.get() {
            return Err("not connected to RabbitMQ".to_owned());
        }
        let Some((channel, queue)) = self.probe_slot().clone() else {
            // Consuming, but no probe channel given: trust the flag.
            return Ok(());
        };
        let declare = channel.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        );
        match tokio::time::timeout(timeout, declare).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(format!("RabbitMQ refused the probe: {error}")),
            Err(_) => Err(format!(
                "RabbitMQ did not answer within {} ms",
                timeout.as_millis()
            )),
        }
    }

    /// A readiness check named `name` that passes while connected and the
    /// broker answers within [`READY_PROBE_TIMEOUT`].
    pub fn check(&self, name: &str) -> Check {
        let state = self.clone();
        Check::new(name, move || {
            let state = state.clone();
            async move { state.probe(READY_PROBE_TIMEOUT).await }
        })
    }
}

/// How a consumer runs.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The queue (declared with its dead-letter queue).
    pub queue: String,
    /// Connection name and consumer tag.
    pub name: String,
    /// Unacked messages the broker may push at once; also how many the
    /// handler runs concurrently.
    pub prefetch: u16,
}

/// Consumes `config.queue` until `stop` fires, reconnecting whenever the
/// connection or channel breaks; `connected` follows the state. Each
/// delivery is handed to `handler` and acked, requeued or dead-lettered as
/// it says, up to `prefetch` at a time.
pub async fn consume<H, Fut>(
    url: SecretString,
    config: ConsumerConfig,
    connected: Connected,
    stop: CancellationToken,
    handler: H,
) where
    H: Fn(Incoming) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Handled> + Send,
{
    let handler = Arc::new(handler);
    loop {
        let Some(connection) = connect_with_retry(&url, &config.name, &stop).await else {
            break;
        };
        match consume_on(&connection, &config, &connected, &stop, handler.clone()).await {
            Ok(()) => {}
            Err(error) => {
                tracing::warn!(%error, queue = %config.queue, "consumer lost its channel; reconnecting")
            }
        }
        connected.set(false);
        super::bounded("closing", connection.close(200, "OK".into()))
            .await
            .ok();
        if stop.is_cancelled() {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(RETRY_PAUSE) => {}
        }
    }
    tracing::info!(queue = %config.queue, "consumer stopped");
}

/// One connection's worth of consuming; returns when the stream ends or
/// `stop` fires.
async fn consume_on<H, Fut>(
    connection: &Connection,
    config: &ConsumerConfig,
    connected: &Connected,
    stop: &CancellationToken,
    handler: Arc<H>,
) -> Result<(), lapin::Error>
where
    H: Fn(Incoming) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Handled> + Send,
{
    let channel = super::bounded("opening a channel", connection.create_channel()).await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    declare_queue(&channel, &config.queue).await?;
    connected.attach_probe(
        super::bounded("opening a channel", connection.create_channel()).await?,
        &config.queue,
    );
    let consumer = channel
        .basic_consume(
            config.queue.as_str().into(),
            config.name.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    connected.set(true);
    tracing::info!(queue = %config.queue, prefetch = config.prefetch, "consuming");
    let work = consumer.for_each_concurrent(usize::from(config.prefetch), |delivery| {
        let handler = handler.clone();
        async move {
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(error) => {
                    tracing::warn!(%error, "delivery failed");
                    return;
                }
            };
            let incoming = Incoming {
                id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .and_then(|id| Uuid::parse_str(id.as_str()).ok()),
                kind: delivery
                    .properties
                    .kind()
                    .as_ref()
                    .map(|k| k.as_str().to_owned()),
                payload: delivery.data.clone(),
                redelivered: delivery.redelivered,
            };
            // The handler runs in a span continuing the publisher's trace,
            // so its logs, outbound calls and outbox rows carry it on.
            let span = tracing::info_span!(
                "message",
                queue = %config.queue,
                kind = incoming.kind.as_deref().unwrap_or("-"),
                message_id = %incoming.id.map(|id| id.to_string()).unwrap_or_default(),
            );
            crate::telemetry::continue_trace(
                &span,
                traceparent_of(&delivery.properties).as_deref(),
            );
            let started = std::time::Instant::now();
            let outcome = handler(incoming).instrument(span.clone()).await;
            // One line per message, as the HTTP edge writes one per request.
            span.in_scope(|| {
                tracing::info!(
                    outcome = ?outcome,
                    latency_us = started.elapsed().as_micros() as u64,
                    "message handled"
                )
            });
            let acked = match outcome {
                Handled::Ack => delivery.ack(Default::default()).await,
                Handled::Retry => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                    delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..BasicNackOptions::default()
                        })
                        .await
                }
                Handled::Reject => {
                    delivery
                        .nack(BasicNackOptions {
                            requeue: false,
                            ..BasicNackOptions::default()
                        })
                        .await
                }
            };
            if let Err(error) = acked {
                // The broker redelivers it on the next connection.
                tracing::warn!(%error, "could not settle a delivery");
            }
        }
    });
    tokio::select! {
        () = stop.cancelled() => {
            channel.close(200, "OK".into()).await.ok();
        }
        () = work => {}
    }
    Ok(())
}
