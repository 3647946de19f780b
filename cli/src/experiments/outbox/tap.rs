//! The bus tap: every message published to `checkout.events`, each copy,
//! with its AMQP `message_id`, as RabbitMQ saw it arrive.
//!
//! Payments publishes through the default exchange, which no queue of ours
//! can be bound to, and checkout consumes the queue (a second consumer
//! would take half the messages). So the tap is RabbitMQ's firehose:
//! `rabbitmqctl trace_on` makes the broker copy every publish to the
//! `amq.rabbitmq.trace` topic exchange (routing key `publish.<exchange>`,
//! the original properties in the `properties` header), where an exclusive
//! queue of ours is bound before the run acts. It needs the fleet's own
//! (native) RabbitMQ; `trace_off` restores it after the run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use uuid::Uuid;

use super::check::BusEvent;
use crate::fleet::state::InfraMode;
use crate::fleet::{Ctx, FleetState, binaries, rabbit};

/// The firehose exchange.
const TRACE_EXCHANGE: &str = "amq.rabbitmq.trace";
/// The queue whose publishes are the run's events.
pub const EVENTS_QUEUE: &str = "checkout.events";

/// What the tap collected so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// The run's candidate events (payload parsed), every copy.
    pub events: Vec<BusEvent>,
    /// Publishes to the events queue whose body was not an event.
    pub unreadable: usize,
    /// When the last publish to the events queue was seen.
    pub last_at: Option<Instant>,
}

/// A running tap; [`Tap::stop`] ends it and switches the firehose off.
pub struct Tap {
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
    _connection: Connection,
    ctl: Rabbitmqctl,
}

/// `rabbitmqctl` aimed at the fleet's node.
struct Rabbitmqctl {
    program: PathBuf,
    home: PathBuf,
    node: String,
    epmd_port: u16,
}

impl Rabbitmqctl {
    fn of(ctx: &Ctx, state: &FleetState) -> Result<Self> {
        if state.infra != InfraMode::Native {
            bail!(
                "the outbox experiment taps RabbitMQ's firehose with rabbitmqctl, which needs the \
                 fleet's own RabbitMQ; this fleet's is {:?}",
                state.infra
            );
        }
        let server = binaries::find("rabbitmq-server", &ctx.tools_dir)?;
        let program = server
            .parent()
            .map(|d| d.join("rabbitmqctl"))
            .filter(|p| p.exists())
            .unwrap_or_else(|| Path::new("/usr/lib/rabbitmq/bin/rabbitmqctl").to_path_buf());
        Ok(Self {
            program,
            home: ctx.state_dir.join("rabbitmq").join("home"),
            node: rabbit::node_name(&state.ports),
            epmd_port: state.ports.epmd,
        })
    }

    async fn run(&self, verb: &str) -> Result<()> {
        let out = tokio::process::Command::new(&self.program)
            .args(["-n", &self.node, verb, "-p", "/"])
            .env("HOME", &self.home)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(std::time::Duration::from_secs(30), out)
            .await
            .with_context(|| format!("rabbitmqctl {verb} did not finish within 30 s"))?
            .with_context(|| format!("cannot run {}", self.program.display()))?;
        if !out.status.success() {
            bail!(
                "rabbitmqctl {verb} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

impl Tap {
    /// Switches the firehose on and starts collecting.
    pub async fn start(ctx: &Ctx, state: &FleetState) -> Result<Self> {
        let ctl = Rabbitmqctl::of(ctx, state)?;
        ctl.run("trace_on").await?;
        match Self::consume(state).await {
            Ok((seen, task, connection)) => Ok(Self {
                seen,
                task,
                _connection: connection,
                ctl,
            }),
            Err(error) => {
                // Leave the broker as it was found.
                if let Err(off) = ctl.run("trace_off").await {
                    tracing::warn!("{off:#}");
                }
                Err(error)
            }
        }
    }

    /// Binds an exclusive queue to the firehose and collects from it.
    async fn consume(
        state: &FleetState,
    ) -> Result<(Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>, Connection)> {
        let connection = Connection::connect(
            &state.endpoints.amqp_url,
            ConnectionProperties::default().with_connection_name("storefront-outbox-tap".into()),
        )
        .await
        .context("the bus tap cannot connect to RabbitMQ")?;
        let channel = connection.create_channel().await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().as_str().into(),
                TRACE_EXCHANGE.into(),
                "publish.#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut consumer = channel
            .basic_consume(
                queue.name().as_str().into(),
                "storefront-outbox-tap".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let headers = delivery.properties.headers().clone().unwrap_or_default();
                let Some(traced) = read_trace(&headers) else {
                    continue;
                };
                if !traced.routing_keys.iter().any(|k| k == EVENTS_QUEUE) {
                    continue;
                }
                let mut seen = sink.lock().expect("not poisoned");
                seen.last_at = Some(Instant::now());
                match parse_event(traced.message_id.as_deref(), &delivery.data) {
                    Some(e) => seen.events.push(e),
                    None => seen.unreadable += 1,
                }
            }
        });
        Ok((seen, task, connection))
    }

    /// Reads what was collected so far.
    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().expect("not poisoned"))
    }

    /// Stops collecting and switches the firehose off; what was seen.
    pub async fn stop(self) -> (Seen, Result<()>) {
        self.task.abort();
        let off = self.ctl.run("trace_off").await;
        let seen = std::mem::take(&mut *self.seen.lock().expect("not poisoned"));
        (seen, off)
    }
}

/// The firehose headers we read.
#[derive(Debug, Default, PartialEq)]
struct Traced {
    routing_keys: Vec<String>,
    message_id: Option<String>,
}

fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The routing keys and message id of a firehose copy.
fn read_trace(headers: &FieldTable) -> Option<Traced> {
    let inner = headers.inner();
    let routing_keys = match inner.get("routing_keys")? {
        AMQPValue::FieldArray(a) => a.as_slice().iter().filter_map(text).collect(),
        _ => return None,
    };
    let message_id = match inner.get("properties") {
        Some(AMQPValue::FieldTable(p)) => p.inner().get("message_id").and_then(text),
        _ => None,
    };
    Some(Traced {
        routing_keys,
        message_id,
    })
}

/// An event body (payments' contract: `type`, `order_id`, `payment_id`).
fn parse_event(message_id: Option<&str>, body: &[u8]) -> Option<BusEvent> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let uuid = |k: &str| v.get(k)?.as_str()?.parse::<Uuid>().ok();
    Some(BusEvent {
        message_id: message_id.and_then(|m| m.parse().ok()),
        order_id: uuid("order_id")?,
        payment_id: uuid("payment_id")?,
        kind: v.get("type")?.as_str()?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString};

    #[test]
    fn firehose_headers_give_the_routing_keys_and_the_original_message_id() {
        let mut props = FieldTable::default();
        props.insert(
            "message_id".into(),
            AMQPValue::LongString(LongString::from("b5e0")),
        );
        let mut h = FieldTable::default();
        h.insert(
            "routing_keys".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::LongString(
                LongString::from(EVENTS_QUEUE),
            )])),
        );
        h.insert("properties".into(), AMQPValue::FieldTable(props));
        let t = read_trace(&h).unwrap();
        assert_eq!(t.routing_keys, [EVENTS_QUEUE]);
        assert_eq!(t.message_id.as_deref(), Some("b5e0"));
        assert_eq!(read_trace(&FieldTable::default()), None);
    }

    #[test]
    fn event_bodies_parse_and_a_bad_id_is_kept_as_none() {
        let (o, p) = (Uuid::new_v4(), Uuid::new_v4());
        let body =
            format!(r#"{{"type": "payment_authorized", "order_id": "{o}", "payment_id": "{p}"}}"#);
        let id = Uuid::new_v4().to_string();
        let e = parse_event(Some(&id), body.as_bytes()).unwrap();
        assert_eq!(
            (e.order_id, e.payment_id, e.kind.as_str()),
            (o, p, "payment_authorized")
        );
        assert_eq!(e.message_id, Some(id.parse().unwrap()));
        assert_eq!(
            parse_event(Some("nope"), body.as_bytes())
                .unwrap()
                .message_id,
            None
        );
        assert_eq!(parse_event(None, b"{\"type\":\"x\"}"), None);
    }
}
