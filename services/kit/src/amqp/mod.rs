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

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

mod consume;
mod publish;

pub use consume::{Connected, ConsumerConfig, Handled, Incoming, READY_PROBE_TIMEOUT, consume};
pub use publish::{Outgoing, Publisher, Refused};

/// Where rejected messages go: a direct exchange routing `<queue>.dlq`.
pub const DEAD_LETTER_EXCHANGE: &str = "storefront.dlx";

/// A consumer that saw its handler ask for a retry waits this long before
/// giving the message back, so a failing database isn't hammered.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// The dead-letter queue of `queue`.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

/// Longest one connection attempt, or one broker round trip a relay or
/// consumer waits on (a channel opened, a connection closed), may take. A
/// broker mid-restart can accept the TCP connection and never finish the
/// AMQP handshake; without a bound the attempt waited forever, and the
/// outbox behind it stayed unpublished for the rest of the run (seen once
/// in a CI fault run: checkout's outbox 315 rows pending minutes later).
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// `operation`, or a timed-out I/O error after [`BROKER_TIMEOUT`].
pub async fn bounded<T>(
    what: &str,
    operation: impl std::future::Future<Output = Result<T, lapin::Error>>,
) -> Result<T, lapin::Error> {
    match tokio::time::timeout(BROKER_TIMEOUT, operation).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{what}: RabbitMQ did not answer within {BROKER_TIMEOUT:?}"),
        )
        .into()),
    }
}

/// Opens a connection named `name` (shown in the broker's connection list),
/// within [`BROKER_TIMEOUT`].
pub async fn connect(url: &SecretString, name: &str) -> Result<Connection, lapin::Error> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    bounded(
        "connecting",
        Connection::connect(url.expose_secret(), properties),
    )
    .await
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
