//! Lab-only switches for `storefront outbox`, set through
//! `PUT /lab/outbox` (mounted only with `LAB_ENDPOINTS=true`, behind the
//! lab admin token). Both are off by default, and a restart forgets them.
//!
//! - **dual write** (the experiment's control arm): an event is published
//!   straight to RabbitMQ from inside the business transaction, before it
//!   commits, instead of being written to the outbox — the naive dual write
//!   the outbox exists to prevent. A crash (or a broker that takes the
//!   publish but answers too late) between the publish and the commit leaves
//!   an event on the bus for a change that never happened.
//! - **hold**: the transaction that wrote an event stays open this long
//!   before it commits, in both arms, so the experiment can kill payments
//!   between "event written" and "commit" deterministically rather than by
//!   luck. `held` counts the transactions waiting there right now.
//!
//! The store calls [`OutboxLab::publish_directly`] where it would enqueue
//! the event and [`OutboxLab::hold`] right after.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use secrecy::SecretString;
use storefront_kit::amqp::{self, Outgoing, Publisher};
use storefront_kit::outbox::NewMessage;
use tokio::sync::Mutex;

/// The longest hold the lab accepts: under the simulated provider's 2 s
/// webhook timeout, so a held transaction is still answered, not abandoned.
pub const MAX_HOLD: Duration = Duration::from_millis(1500);

/// How long a direct publish may wait for the broker's confirm.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// The switches, shared by the store and the lab route (clones share).
#[derive(Clone, Default)]
pub struct OutboxLab(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// Publish events directly instead of writing them to the outbox.
    dual_write: AtomicBool,
    /// Milliseconds a transaction that wrote an event waits before committing.
    hold_ms: AtomicU64,
    /// Transactions inside the hold now.
    held: AtomicUsize,
    /// Events published directly since start.
    published_directly: AtomicU64,
    /// Where direct publishes go (`None`: refused).
    amqp_url: Option<SecretString>,
    /// The direct publisher, opened on first use and dropped on any error
    /// (its channel keeps its connection open).
    publisher: Mutex<Option<Publisher>>,
}

/// What `GET /lab/outbox` shows (the wire type, in the contract).
pub use crate::contract::OutboxSettings as Settings;

/// Why a direct publish failed; the store turns it into a failed
/// transaction (rolled back: the webhook is retried by the provider).
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// The broker failed or refused.
    #[error("lab dual write: {0}")]
    Broker(String),
}

impl From<DirectError> for sqlx::Error {
    fn from(e: DirectError) -> Self {
        sqlx::Error::Protocol(e.to_string())
    }
}

impl OutboxLab {
    /// Switches off, publishing (when switched on) to `amqp_url`.
    pub fn new(amqp_url: SecretString) -> Self {
        Self(Arc::new(Inner {
            amqp_url: Some(amqp_url),
            ..Inner::default()
        }))
    }

    /// The switches and counters now.
    pub fn settings(&self) -> Settings {
        Settings {
            dual_write: self.0.dual_write.load(Ordering::SeqCst),
            hold_ms: self.0.hold_ms.load(Ordering::SeqCst),
            held: self.0.held.load(Ordering::SeqCst),
            published_directly: self.0.published_directly.load(Ordering::SeqCst),
        }
    }

    /// Sets both switches; `hold` is capped at [`MAX_HOLD`] by the caller.
    pub fn set(&self, dual_write: bool, hold: Duration) {
        self.0
            .hold_ms
            .store(hold.min(MAX_HOLD).as_millis() as u64, Ordering::SeqCst);
        self.0.dual_write.store(dual_write, Ordering::SeqCst);
    }

    /// With the dual write on, publishes `message` to RabbitMQ now (inside
    /// the caller's open transaction) and returns `true`: the caller must
    /// then not enqueue it. Off (the default): `false`, nothing done.
    pub async fn publish_directly(&self, message: &NewMessage<'_>) -> Result<bool, DirectError> {
        if !self.0.dual_write.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let outgoing = Outgoing {
            id: message.id,
            queue: message.destination.to_owned(),
            kind: message.kind.to_owned(),
            payload: serde_json::to_vec(message.payload)
                .map_err(|e| DirectError::Broker(e.to_string()))?,
            traceparent: None,
        };
        let mut slot = self.0.publisher.lock().await;
        let result = tokio::time::timeout(PUBLISH_TIMEOUT, async {
            if slot.is_none() {
                let url = self.0.amqp_url.as_ref().ok_or_else(|| {
                    DirectError::Broker("no broker configured for direct publishes".into())
                })?;
                let connection = amqp::connect(url, "payments-lab-dual-write")
                    .await
                    .map_err(|e| DirectError::Broker(e.to_string()))?;
                let publisher = Publisher::open(&connection)
                    .await
                    .map_err(|e| DirectError::Broker(e.to_string()))?;
                *slot = Some(publisher);
            }
            let publisher = slot.as_mut().expect("opened above");
            let confirmed = publisher
                .publish_batch(std::slice::from_ref(&outgoing))
                .await
                .map_err(|e| DirectError::Broker(e.to_string()))?;
            match confirmed.into_iter().next() {
                Some(Ok(())) => Ok(()),
                Some(Err(refused)) => Err(DirectError::Broker(refused.to_string())),
                None => Err(DirectError::Broker("no confirm".into())),
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(DirectError::Broker(format!(
                "no confirm within {PUBLISH_TIMEOUT:?}"
            )))
        });
        match result {
            Ok(()) => {
                self.0.published_directly.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(id = %message.id, kind = message.kind, "lab dual write: event published before its transaction commits");
                Ok(true)
            }
            Err(error) => {
                // Reconnect on the next publish.
                *slot = None;
                Err(error)
            }
        }
    }

    /// Waits the configured hold (none by default), counted in `held`
    /// while it waits, even if the wait is abandoned.
    pub async fn hold(&self) {
        let ms = self.0.hold_ms.load(Ordering::SeqCst);
        if ms == 0 {
            return;
        }
        struct Held<'a>(&'a AtomicUsize);
        impl Drop for Held<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.0.held.fetch_add(1, Ordering::SeqCst);
        let _held = Held(&self.0.held);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &serde_json::Value) -> NewMessage<'_> {
        NewMessage {
            id: uuid::Uuid::new_v4(),
            destination: "q",
            kind: "k",
            payload,
        }
    }

    #[tokio::test]
    async fn switched_off_nothing_is_published_and_the_caller_enqueues() {
        let lab = OutboxLab::default();
        let payload = serde_json::json!({});
        assert!(!lab.publish_directly(&message(&payload)).await.unwrap());
        assert_eq!(lab.settings().published_directly, 0);
    }

    #[tokio::test]
    async fn switched_on_without_a_broker_the_publish_fails_so_the_transaction_rolls_back() {
        let lab = OutboxLab::default();
        lab.set(true, Duration::ZERO);
        let payload = serde_json::json!({});
        let err = lab.publish_directly(&message(&payload)).await.unwrap_err();
        assert!(err.to_string().contains("no broker"), "{err}");
    }

    #[tokio::test]
    async fn a_hold_is_counted_while_it_waits_and_capped() {
        let lab = OutboxLab::default();
        lab.set(false, Duration::from_secs(60));
        assert_eq!(lab.settings().hold_ms, MAX_HOLD.as_millis() as u64);
        lab.set(false, Duration::from_millis(300));
        let waiting = tokio::spawn({
            let lab = lab.clone();
            async move { lab.hold().await }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while lab.settings().held == 0 && std::time::Instant::now() < deadline {
            tokio::task::yield_now().await;
        }
        assert_eq!(lab.settings().held, 1);
        waiting.await.unwrap();
        assert_eq!(lab.settings().held, 0);
    }
}
