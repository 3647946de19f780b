//! Acting: the lab switches (over HTTP, with the lab admin token), the
//! commands (published to `payments.commands` with confirms), and the two
//! faults, each fired at a moment the run observes rather than guesses:
//! payments is SIGKILLed while at least one transaction has written its
//! event and not yet committed (`held` ≥ 1 in `GET /lab/outbox`), and
//! RabbitMQ is paused (SIGSTOP, then SIGCONT) at the same kind of moment,
//! so the event's publish meets a frozen broker.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use super::plan::Op;
use crate::clients::call::HttpError;
use crate::clients::contract::payments::{OutboxSettings, OutboxSwitches};
use crate::clients::payments::Payments;
use crate::fleet::Ctx;
use crate::fleet::control::{self, How};

/// The queue payments consumes commands from.
const COMMANDS_QUEUE: &str = "payments.commands";

/// Payments' lab endpoint for the switches.
pub struct Switches {
    /// With the lab admin token, when the fleet sets one.
    pub payments: Payments,
}

impl Switches {
    /// Sets the dual write and the hold; retried until `deadline` (payments
    /// may be starting again).
    pub async fn set(
        &self,
        dual_write: bool,
        hold_ms: u64,
        deadline: Instant,
    ) -> Result<OutboxSettings> {
        let switches = OutboxSwitches {
            dual_write,
            hold_ms,
        };
        loop {
            let e = match self.payments.set_outbox(switches).await {
                Ok(settings) => return Ok(settings),
                Err(e) => e,
            };
            let status = e.downcast_ref::<HttpError>().map(|h| h.status);
            if status.is_some_and(|s| s.is_client_error()) {
                return Err(
                    e.context("are payments' lab endpoints on, and is this the lab admin token?")
                );
            }
            if Instant::now() >= deadline {
                bail!("payments did not take the lab switches before the deadline");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Transactions holding an uncommitted event now (`None`: no answer
    /// within two seconds).
    pub async fn held(&self) -> Option<u64> {
        let asked = tokio::time::timeout(Duration::from_secs(2), self.payments.outbox());
        u64::try_from(asked.await.ok()?.ok()?.held).ok()
    }

    /// Polls until a transaction is held; how many were, or `None` by the deadline.
    pub async fn wait_held(&self, deadline: Instant) -> Option<u64> {
        while Instant::now() < deadline {
            if let Some(n) = self.held().await.filter(|n| *n > 0) {
                return Some(n);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }
}

/// A confirm channel to the broker for the commands.
pub struct Commands {
    _connection: Connection,
    channel: Channel,
}

impl Commands {
    pub async fn open(amqp_url: &str) -> Result<Self> {
        let connection = Connection::connect(
            amqp_url,
            ConnectionProperties::default().with_connection_name("storefront-outbox".into()),
        )
        .await
        .context("cannot connect to RabbitMQ to send the commands")?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            _connection: connection,
            channel,
        })
    }

    /// Publishes each op's command (persistent, mandatory) and waits for the
    /// broker's confirms; an unroutable or nacked command is an error.
    pub async fn send(&self, ops: &[&Op]) -> Result<()> {
        let mut confirms = Vec::with_capacity(ops.len());
        for op in ops {
            let properties = BasicProperties::default()
                .with_message_id(op.message_id.to_string().into())
                .with_type("authorize_payment".into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2);
            let body = serde_json::to_vec(&op.command())?;
            confirms.push(
                self.channel
                    .basic_publish(
                        "".into(),
                        COMMANDS_QUEUE.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &body,
                        properties,
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            match confirm.await? {
                Confirmation::Ack(None) | Confirmation::NotRequested => {}
                other => bail!("the broker did not take a command: {other:?}"),
            }
        }
        Ok(())
    }
}

/// SIGKILLs payments and starts it again; how long until it was ready.
pub async fn kill_payments(ctx: &Ctx) -> Result<Duration> {
    tokio::task::block_in_place(|| control::stop(ctx, "payments", How::Crash))?;
    control::start(ctx, "payments").await
}

/// Freezes RabbitMQ for `pause`, then thaws it (always, once frozen).
pub async fn pause_rabbitmq(ctx: &Ctx, pause: Duration) -> Result<()> {
    tokio::task::block_in_place(|| control::pause(ctx, "rabbitmq", false))?;
    tokio::time::sleep(pause).await;
    tokio::task::block_in_place(|| control::pause(ctx, "rabbitmq", true))?;
    Ok(())
}
