//! RabbitMQ, the way every storefront service that messages uses it, in one
//! place: connect with retry, one topology (durable queues, each with a
//! dead-letter queue), publish with publisher confirms, consume with manual
//! acks. Messages go through the default exchange with the destination
//! queue's name as the routing key, published `mandatory` so a message no
//! queue takes comes back as a failure instead of vanishing.
//!
//! lapin (tokio runtime) does the protocol; nothing here is clever on
//! purpose: the outbox ([`crate::outbox`]) and inbox ([`crate::inbox`]) make
//! delivery reliable, this module only moves bytes.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::checks::Check;

/// Where rejected messages go: a direct exchange routing `<queue>.dlq`.
pub const DEAD_LETTER_EXCHANGE: &str = "storefront.dlx";

/// A consumer that saw its handler ask for a retry waits this long before
/// giving the message back, so a failing database isn't hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The dead-letter queue of `queue`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Opens a connection named `name` (shown in the broker's connection list).
pub async fn connect(url: &SecretString, name: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    Connection::connect(url.expose_secret(), properties).await
}

/// Connects, retrying with exponential backoff and jitter (100 ms to 5 s)
/// until it succeeds or `stop` fires (`None`).
pub async fn connect_with_retry(
    url: &SecretString,
    name: &str,
    stop: &CancellationToken,
) -> Option<Connection> {
    let policy = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times();
    let attempt = (|| connect(url, name))
        .retry(policy)
        .notify(|error, wait| tracing::warn!(%error, connection = name, retry_in_ms = wait.as_millis() as u64, "cannot reach RabbitMQ"));
    tokio::select! {
        () = stop.cancelled() => None,
        connected = attempt => connected.ok(),
    }
}

/// Declares `queue` durable, dead-lettering into `<queue>.dlq` (declared and
/// bound too). Idempotent, so publishers and consumers both call it and
/// whichever starts first creates the topology.
pub async fn declare_queue(channel: &Channel, queue: &str) -> Result<lapin::Queue, lapin::Error> {
    channel
        .exchange_declare(
            DEAD_LETTER_EXCHANGE.into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let dlq = dead_letter_queue(queue);
    channel
        .queue_declare(
            dlq.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            dlq.as_str().into(),
            DEAD_LETTER_EXCHANGE.into(),
            dlq.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(DEAD_LETTER_EXCHANGE.into()),
    );
    arguments.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(dlq.as_str().into()),
    );
    channel
        .queue_declare(queue.into(), QueueDeclareOptions::durable(), arguments)
        .await
}

/// Ready and dead-lettered message counts of `queue`, read with a passive
/// declare on a channel of its own (a passive declare of a missing queue
/// closes its channel).
pub async fn depths(connection: &Connection, queue: &str) -> Result<(u32, u32), lapin::Error> {
    let channel = connection.create_channel().await?;
    let passive = QueueDeclareOptions::durable().passive();
    let ready = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await?
        .message_count();
    let dead = channel
        .queue_declare(
            dead_letter_queue(queue).as_str().into(),
            passive,
            FieldTable::default(),
        )
        .await?
        .message_count();
    channel.close(200, "OK".into()).await.ok();
    Ok((ready, dead))
}

/// Gauge: messages ready in a queue, as the broker counts them.
pub const QUEUE_MESSAGES_METRIC: &str = "amqp_queue_messages";
/// Gauge: messages in a queue's dead-letter queue.
pub const QUEUE_DEAD_LETTERS_METRIC: &str = "amqp_queue_dead_letters";

/// Every `interval`, reads each of `queues`' depths and its dead-letter
/// queue's from the broker into the gauges above (labelled by queue), so
/// `/metrics` shows what the broker holds, until `stop` fires.
pub fn spawn_queue_gauges(
    url: SecretString,
    name: String,
    queues: Vec<String>,
    interval: Duration,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        'connect: while let Some(connection) = connect_with_retry(&url, &name, &stop).await {
            loop {
                for queue in &queues {
                    match depths(&connection, queue).await {
                        Ok((ready, dead)) => {
                            let label = [("queue", queue.clone())];
                            metrics::gauge!(QUEUE_MESSAGES_METRIC, &label).set(f64::from(ready));
                            metrics::gauge!(QUEUE_DEAD_LETTERS_METRIC, &label).set(f64::from(dead));
                        }
                        // Not declared yet (nobody consumed or published):
                        // nothing to report. A broken connection is retried.
                        Err(error) => {
                            tracing::debug!(%error, %queue, "queue depth unavailable");
                            if !connection.status().connected() {
                                continue 'connect;
                            }
                        }
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => break 'connect,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        }
    })
}

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
        connection.close(200, "OK".into()).await.ok();
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
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await?;
    declare_queue(&channel, &config.queue).await?;
    connected.attach_probe(connection.create_channel().await?, &config.queue);
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
