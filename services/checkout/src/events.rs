//! The consumer of `checkout.events`: each event from payments becomes one
//! saga transition (inbox row + state + history + next command, written in
//! one transaction), then is acked. An unreadable message is
//! dead-lettered; a database failure requeues it.
//!
//! Deliveries that arrive together share that transaction
//! ([`storefront_kit::batch`]): payments' relay publishes events in bursts
//! and the consumer holds up to its prefetch at once, and a commit per
//! event was two of a saga's commits (issue 15). Each message is acked
//! only after the transaction holding its inbox row and its transition
//! commits, so delivery stays at least once and every transition happens
//! once. A batch that fails is applied again event by event.

use storefront_kit::amqp::{Handled, Incoming};
use storefront_kit::batch::{Batcher, Gone};
use storefront_payments::contract::Event;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::orchestrator::Orchestrator;
use crate::saga::{Input, Wake};
use crate::store::{Applied, Store};

/// Counter of events handled, by kind and outcome.
pub const EVENTS_METRIC: &str = "checkout_events_total";

/// Most events applied in one transaction.
pub const MAX_BATCH: usize = 32;

/// An event to apply: the order, the input, the message id and kind.
type Job = (Uuid, Input, Uuid, &'static str);

/// Applies payments' events in batches.
#[derive(Clone)]
pub struct Events {
    orchestrator: Orchestrator,
    batcher: Batcher<Job, Result<Applied, sqlx::Error>>,
}

impl Events {
    /// Events applied through `orchestrator`'s store, in batches of at
    /// most [`MAX_BATCH`].
    pub fn new(orchestrator: Orchestrator) -> Self {
        let store = orchestrator.store.clone();
        let batcher = Batcher::spawn(MAX_BATCH, move |jobs| {
            let store = store.clone();
            async move { apply_batch(&store, jobs).await }
        });
        Self {
            orchestrator,
            batcher,
        }
    }

    /// Applies one event with whatever arrived with it.
    async fn apply(&self, job: Job) -> Result<Applied, sqlx::Error> {
        match self.batcher.submit(job).await {
            Ok(result) => result,
            Err(Gone(Some((order_id, input, id, kind)))) => {
                self.orchestrator
                    .store
                    .apply_event(order_id, input, (id, kind))
                    .await
            }
            Err(Gone(None)) => Err(sqlx::Error::WorkerCrashed),
        }
    }
}

/// Applies `jobs` in one transaction, in order of order id (the order
/// their rows are locked in, the same in every replica); if that fails,
/// each on its own. One result per job, in the order given.
async fn apply_batch(
    store: &Store,
    jobs: Vec<(Job, tracing::Span)>,
) -> Vec<Result<Applied, sqlx::Error>> {
    if jobs.len() > 1 {
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&i| jobs[i].0.0);
        let sorted: Vec<_> = order
            .iter()
            .map(|&i| {
                let ((order_id, input, id, kind), span) = &jobs[i];
                (*order_id, *input, (*id, *kind), span.clone())
            })
            .collect();
        match store.apply_events(&sorted).await {
            Ok(applied) => {
                let mut results: Vec<Option<Applied>> = vec![None; jobs.len()];
                for (i, one) in order.into_iter().zip(applied) {
                    results[i] = Some(one);
                }
                return results
                    .into_iter()
                    .map(|r| r.ok_or(sqlx::Error::WorkerCrashed))
                    .collect();
            }
            Err(error) => {
                tracing::warn!(%error, events = jobs.len(), "event batch failed; applying its events one by one");
            }
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    for ((order_id, input, id, kind), span) in &jobs {
        let applied = store.apply_event(*order_id, *input, (*id, kind));
        results.push(applied.instrument(span.clone()).await);
    }
    results
}

/// The saga input an event is.
pub fn input_of(event: &Event) -> Input {
    match event {
        Event::PaymentAuthorized { .. } => Input::PaymentAuthorized,
        Event::PaymentDeclined { .. } => Input::PaymentDeclined,
        Event::PaymentCaptured { .. } => Input::PaymentCaptured,
        Event::PaymentCaptureFailed { .. } => Input::PaymentCaptureFailed,
        Event::PaymentVoided { .. } => Input::PaymentVoided,
    }
}

/// Handles one delivery.
pub async fn handle(events: &Events, message: Incoming) -> Handled {
    let orchestrator = &events.orchestrator;
    let Some(id) = message.id else {
        tracing::error!(kind = ?message.kind, "event without a UUID message_id; dead-lettering");
        return Handled::Reject;
    };
    let event: Event = match serde_json::from_slice(&message.payload) {
        Ok(e) => e,
        Err(error) => {
            tracing::error!(%id, %error, "unreadable event; dead-lettering");
            return Handled::Reject;
        }
    };
    let order_id = event.order_id();
    let applied = events
        .apply((order_id, input_of(&event), id, event.kind()))
        .await;
    let label = match &applied {
        Ok(Applied::Moved(_)) => "moved",
        Ok(Applied::Ignored) => "ignored",
        Ok(Applied::Duplicate) => "duplicate",
        Ok(Applied::Missing) => "unknown_order",
        Ok(Applied::Conflict) => "conflict",
        Err(_) => "error",
    };
    metrics::counter!(EVENTS_METRIC, "kind" => event.kind(), "outcome" => label).increment(1);
    match applied {
        Ok(Applied::Moved(t)) => {
            if t.wake == Wake::Now {
                orchestrator.kick(order_id);
            }
            Handled::Ack
        }
        Ok(Applied::Missing) => {
            tracing::warn!(%id, %order_id, "event for an unknown order; dropped");
            Handled::Ack
        }
        Ok(Applied::Ignored | Applied::Duplicate) => Handled::Ack,
        Ok(Applied::Conflict) | Err(_) => {
            tracing::warn!(%id, %order_id, outcome = label, "event not applied; requeueing");
            Handled::Retry
        }
    }
}
