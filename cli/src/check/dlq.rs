//! Dead-letter queue depths straight from the broker, over the AMQP
//! endpoint the fleet records: a passive declare answers a queue's message
//! count without touching its messages. (The services' `/metrics` relay the
//! same count, refreshed each second; the broker's own answer is exact and
//! needs no service up.)

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
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
