//! W3C trace context crosses RabbitMQ: a message published in a trace
//! carries its `traceparent` header, and the consumer's handler runs in a
//! span continuing that trace (its log lines and its own messages carry
//! it); a message enqueued in the outbox inside a request is relayed in
//! that request's trace, though the relay runs outside it. On the real
//! broker and Postgres: needs TEST_AMQP_URL and TEST_DATABASE_URL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use secrecy::SecretString;
use sqlx::postgres::PgPoolOptions;
use storefront_kit::amqp::{self, Connected, ConsumerConfig, Handled, Outgoing, Publisher};
use storefront_kit::outbox::{self, Backoff, NewMessage, OutboxTable, RelayConfig};
use storefront_kit::telemetry;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The caller's context: trace 4bf9…4736, parent span 00f0…02b7.
const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// Another trace, named explicitly on a message.
const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const OTHER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

fn env(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if value.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not set: run scripts/test.sh"
        );
        eprintln!("skipped: set {name} (scripts/test.sh does)");
    }
    value
}

/// Log lines the test subscriber wrote.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Lines {
    type Writer = Lines;
    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

impl Lines {
    fn with_message(&self, message: &str) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|l| l["fields"]["message"] == message)
            .collect()
    }
}

/// The trace id of a `traceparent`.
fn trace_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or("")
}

/// Consumes `queue`; every handled message's (kind, traceparent seen by the
/// handler) arrives on the returned channel.
fn consume(
    url: &str,
    queue: &str,
    stop: &CancellationToken,
) -> mpsc::UnboundedReceiver<(String, Option<String>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = ConsumerConfig {
        queue: queue.to_owned(),
        name: format!("trace-test-{queue}"),
        prefetch: 4,
    };
    tokio::spawn(amqp::consume(
        SecretString::from(url.to_owned()),
        config,
        Connected::default(),
        stop.clone(),
        move |incoming| {
            let tx = tx.clone();
            async move {
                tracing::info!("handling in the consumer");
                let _ = tx.send((
                    incoming.kind.unwrap_or_default(),
                    telemetry::current_traceparent(),
                ));
                Handled::Ack
            }
        },
    ));
    rx
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<(String, Option<String>)>,
) -> (String, Option<String>) {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("the consumer handled a message within 10 s")
        .expect("the consumer is running")
}

fn message(queue: &str, kind: &str, traceparent: Option<&str>) -> Outgoing {
    Outgoing {
        id: Uuid::new_v4(),
        queue: queue.to_owned(),
        kind: kind.to_owned(),
        payload: b"{}".to_vec(),
        traceparent: traceparent.map(str::to_owned),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_message_carries_the_publishers_trace_in_its_headers_and_the_handler_continues_it() {
    let Some(url) = env("TEST_AMQP_URL") else {
        return;
    };
    let lines = Lines::default();
    let provider = telemetry::plain_provider("trace-test");
    let _guard = tracing::subscriber::set_default(telemetry::subscriber(
        &provider,
        "trace-test",
        lines.clone(),
    ));
    let connection = amqp::connect(&SecretString::from(url.clone()), "trace-test")
        .await
        .unwrap();
    let mut publisher = Publisher::open(&connection).await.unwrap();

    // The raw headers: publish into a queue nobody consumes, then get it.
    let raw_queue = format!("trace-raw-{}", Uuid::new_v4().simple());
    let span = tracing::info_span!("request");
    telemetry::continue_trace(&span, Some(CALLER));
    let sent_in_span = async {
        let parent = telemetry::current_traceparent().unwrap();
        publisher
            .publish_batch(&[message(&raw_queue, "raw", None)])
            .await
            .unwrap();
        parent
    };
    let parent = tracing::Instrument::instrument(sent_in_span, span.clone()).await;
    let channel = connection.create_channel().await.unwrap();
    let got = channel
        .basic_get(raw_queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message is in its queue");
    let header = got
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(telemetry::TRACEPARENT).cloned());
    match header {
        Some(AMQPValue::LongString(value)) => {
            assert_eq!(std::str::from_utf8(value.as_bytes()).unwrap(), parent)
        }
        other => panic!("no traceparent header: {other:?}"),
    }

    // Through a consumer: the publisher's span's trace, or the one named.
    let queue = format!("trace-{}", Uuid::new_v4().simple());
    let stop = CancellationToken::new();
    let mut handled = consume(&url, &queue, &stop);
    let publish_in_span = async {
        publisher
            .publish_batch(&[
                message(&queue, "from-span", None),
                message(&queue, "named", Some(OTHER)),
            ])
            .await
            .unwrap()
    };
    tracing::Instrument::instrument(publish_in_span, span).await;
    let mut seen = [next(&mut handled).await, next(&mut handled).await];
    seen.sort();
    let (from_span, named) = (&seen[0], &seen[1]);
    assert_eq!(from_span.0, "from-span");
    assert_eq!(trace_of(from_span.1.as_deref().unwrap()), CALLER_TRACE);
    assert_eq!(named.0, "named");
    assert_eq!(trace_of(named.1.as_deref().unwrap()), OTHER_TRACE);

    let logged: Vec<String> = lines
        .with_message("handling in the consumer")
        .iter()
        .map(|l| l["trace_id"].as_str().unwrap_or("none").to_owned())
        .collect();
    assert!(logged.contains(&CALLER_TRACE.to_owned()), "{logged:?}");
    assert!(logged.contains(&OTHER_TRACE.to_owned()), "{logged:?}");
    stop.cancel();
    channel
        .queue_delete(raw_queue.as_str().into(), Default::default())
        .await
        .ok();
    channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .ok();
}

#[tokio::test(flavor = "current_thread")]
async fn an_outbox_row_enqueued_in_a_request_is_relayed_in_that_requests_trace() {
    let (Some(amqp_url), Some(db_url)) = (env("TEST_AMQP_URL"), env("TEST_DATABASE_URL")) else {
        return;
    };
    let provider = telemetry::plain_provider("trace-test");
    let _guard = tracing::subscriber::set_default(telemetry::subscriber(
        &provider,
        "trace-test",
        Lines::default(),
    ));
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&db_url)
        .await
        .unwrap();
    let schema = format!("test_{}", Uuid::new_v4().simple());
    for sql in [
        format!("CREATE SCHEMA {schema}"),
        format!(
            "CREATE TABLE {schema}.outbox (id uuid PRIMARY KEY, destination text NOT NULL, kind text NOT NULL, \
             payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT clock_timestamp(), \
             attempts integer NOT NULL DEFAULT 0, next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(), \
             last_error text, published_at timestamptz, dead_at timestamptz, traceparent text)"
        ),
    ] {
        sqlx::query(&sql).execute(&pool).await.unwrap();
    }
    let table = OutboxTable::new(&format!("{schema}.outbox"), &format!("{schema}_outbox"));
    let queue = format!("trace-outbox-{}", Uuid::new_v4().simple());
    let payload = serde_json::json!({});

    let span = tracing::info_span!("request");
    telemetry::continue_trace(&span, Some(CALLER));
    let traced = NewMessage {
        id: Uuid::new_v4(),
        destination: &queue,
        kind: "traced",
        payload: &payload,
    };
    let enqueue = outbox::enqueue(&pool, &table, &traced);
    tracing::Instrument::instrument(enqueue, span)
        .await
        .unwrap();
    outbox::enqueue(
        &pool,
        &table,
        &NewMessage {
            id: Uuid::new_v4(),
            destination: &queue,
            kind: "untraced",
            payload: &payload,
        },
    )
    .await
    .unwrap();
    let stored: Vec<Option<String>> = sqlx::query_scalar(&format!(
        "SELECT traceparent FROM {schema}.outbox ORDER BY kind"
    ))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(trace_of(stored[0].as_deref().unwrap()), CALLER_TRACE);
    assert_eq!(stored[1], None, "enqueued outside any trace");

    let stop = CancellationToken::new();
    let mut handled = consume(&amqp_url, &queue, &stop);
    let connection = amqp::connect(&SecretString::from(amqp_url.clone()), "trace-test-relay")
        .await
        .unwrap();
    let mut publisher = Publisher::open(&connection).await.unwrap();
    let config = RelayConfig {
        batch_size: 10,
        poll_interval: Duration::from_millis(50),
        max_attempts: 3,
        backoff: Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        },
        retention: Duration::from_secs(3600),
        cleanup_interval: Duration::from_secs(60),
    };
    // The relay runs outside any request.
    let pass = outbox::relay_once(&pool, &table, &mut publisher, &config)
        .await
        .unwrap();
    assert_eq!(pass.published, 2);
    let mut seen = [next(&mut handled).await, next(&mut handled).await];
    seen.sort();
    assert_eq!(seen[0].0, "traced");
    assert_eq!(trace_of(seen[0].1.as_deref().unwrap()), CALLER_TRACE);
    assert_eq!(seen[1].0, "untraced");
    let own = seen[1]
        .1
        .as_deref()
        .expect("the consumer's span starts a trace");
    assert_ne!(trace_of(own), CALLER_TRACE);

    stop.cancel();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .ok();
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}
