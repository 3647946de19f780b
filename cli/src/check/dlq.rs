//! Dead-letter queue depths straight from the broker, over the AMQP
//! endpoint the fleet records: a passive declare answers a queue's message
//! count without touching its messages. (The services' `/metrics` relay the
//! same count, refreshed each second; the broker's own answer is exact and
//! needs no service up.)

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};

/// The dead-letter queues of the queues the fleet consumes (kit's topology:
/// every queue `<q>` dead-letters into `<q>.dlq`).
pub const QUEUES: [&str; 2] = ["payments.commands.dlq", "checkout.events.dlq"];

/// How long connecting and each declare may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Each of [`QUEUES`] with its depth, `None` where it cannot be read.
pub async fn depths(amqp_url: &str) -> Vec<(String, Option<u64>)> {
    let connection = tokio::time::timeout(
        TIMEOUT,
        Connection::connect(amqp_url, ConnectionProperties::default()),
    )
    .await;
    let Ok(Ok(connection)) = connection else {
        return QUEUES.iter().map(|q| ((*q).to_owned(), None)).collect();
    };
    let mut out = Vec::new();
    for queue in QUEUES {
        let depth = tokio::time::timeout(TIMEOUT, depth(&connection, queue))
            .await
            .ok()
            .flatten();
        out.push((queue.to_owned(), depth));
    }
    connection.close(200, "OK".into()).await.ok();
    out
}

/// A passive declare on a channel of its own (declaring a missing queue
/// passively closes the channel).
async fn depth(connection: &Connection, queue: &str) -> Option<u64> {
    let channel = connection.create_channel().await.ok()?;
    let passive = QueueDeclareOptions::default().passive();
    let count = channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .ok()?
        .message_count();
    channel.close(200, "OK".into()).await.ok();
    Some(u64::from(count))
}

/// At most this many messages of one queue are looked at to date them;
/// beyond, only the depth is known.
const PEEK_LIMIT: u64 = 1000;

/// Each of [`QUEUES`] with its depth and how many of its messages were
/// dead-lettered at or after `since` (by their `x-death` time; a message
/// without one counts as recent). The messages are fetched without an
/// acknowledgement and go back to the queue when the channel closes: a
/// peek, which leaves a dead-letter queue (nobody consumes it) as it was.
pub async fn depths_since(amqp_url: &str, since: DateTime<Utc>) -> Vec<Depth> {
    let connection = tokio::time::timeout(
        TIMEOUT,
        Connection::connect(amqp_url, ConnectionProperties::default()),
    )
    .await;
    let Ok(Ok(connection)) = connection else {
        return QUEUES
            .iter()
            .map(|q| Depth {
                queue: (*q).to_owned(),
                now: None,
                since: None,
            })
            .collect();
    };
    let mut out = Vec::new();
    for queue in QUEUES {
        let now = tokio::time::timeout(TIMEOUT, depth(&connection, queue))
            .await
            .ok()
            .flatten();
        let recent = match now {
            Some(0) => Some(0),
            Some(n) if n <= PEEK_LIMIT => {
                tokio::time::timeout(TIMEOUT, peek(&connection, queue, n))
                    .await
                    .ok()
                    .flatten()
                    .map(|times| recent(&times, since))
            }
            _ => None,
        };
        out.push(Depth {
            queue: queue.to_owned(),
            now,
            since: recent,
        });
    }
    connection.close(200, "OK".into()).await.ok();
    out
}

/// A dead-letter queue's depth, and how much of it is recent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Depth {
    pub queue: String,
    pub now: Option<u64>,
    /// Dead-lettered since the scope's start (`None`: not dated).
    pub since: Option<u64>,
}

/// Of messages dead-lettered at these times (Unix seconds; `None`: no
/// `x-death` time), how many at or after `since`.
pub fn recent(times: &[Option<u64>], since: DateTime<Utc>) -> u64 {
    let since = since.timestamp().max(0) as u64;
    times
        .iter()
        .filter(|t| t.is_none_or(|t| t >= since))
        .count() as u64
}

/// The `x-death` time of up to `n` messages of `queue`, unacknowledged;
/// closing the channel requeues them.
async fn peek(connection: &Connection, queue: &str, n: u64) -> Option<Vec<Option<u64>>> {
    let channel = connection.create_channel().await.ok()?;
    let mut times = Vec::new();
    for _ in 0..n {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .ok()?;
        let Some(message) = got else { break };
        times.push(death_time(message.delivery.properties.headers().as_ref()));
    }
    channel.close(200, "OK".into()).await.ok();
    Some(times)
}

/// The first `x-death` entry's `time`, as RabbitMQ records a dead-lettering.
fn death_time(headers: Option<&FieldTable>) -> Option<u64> {
    let AMQPValue::FieldArray(deaths) = headers?.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    match first.inner().get("time")? {
        AMQPValue::Timestamp(t) => Some(*t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_letter_counts_as_recent_from_its_x_death_time() {
        let since = DateTime::from_timestamp(1_000, 0).unwrap();
        assert_eq!(
            recent(&[Some(999), Some(1_000), Some(1_001), None], since),
            3
        );
        let mut death = FieldTable::default();
        death.insert("time".into(), AMQPValue::Timestamp(1_234));
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
        );
        assert_eq!(death_time(Some(&headers)), Some(1_234));
        assert_eq!(death_time(Some(&FieldTable::default())), None);
        assert_eq!(death_time(None), None);
    }
}
