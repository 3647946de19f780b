//! The consumer of `payments.commands`: each delivery's inbox row and
//! effect are written in one store transaction, then it is acked. A
//! message that can never be handled is dead-lettered; a database failure
//! requeues it.
//!
//! Deliveries that arrive together share that transaction
//! ([`storefront_kit::batch`]): checkout's relay publishes commands in
//! bursts and the consumer holds up to its prefetch at once, and a commit
//! per command was two of a saga's commits (issue 15). Each message is
//! still acked only after the transaction holding its inbox row and its
//! effect commits, so delivery stays at least once and every effect
//! happens once. A batch that fails is applied again command by command,
//! so one bad command costs only itself a retry.

use storefront_kit::amqp::{Handled, Incoming};
use storefront_kit::batch::{Batcher, Gone};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::contract::Command;
use crate::store::{Outcome, Store};

/// Counter of commands handled, by kind and outcome.
pub const COMMANDS_METRIC: &str = "payments_commands_total";

/// Most commands applied in one transaction.
pub const MAX_BATCH: usize = 32;

/// A command and its message id.
type Job = (Uuid, Command);

/// Applies commands in batches.
#[derive(Clone)]
pub struct Commands {
    store: Store,
    batcher: Batcher<Job, Result<Outcome, sqlx::Error>>,
}

impl Commands {
    /// Commands applied on `store`, in batches of at most [`MAX_BATCH`].
    pub fn new(store: Store) -> Self {
        let worker = store.clone();
        let batcher = Batcher::spawn(MAX_BATCH, move |jobs| {
            let store = worker.clone();
            async move { apply_batch(&store, jobs).await }
        });
        Self { store, batcher }
    }

    /// Applies `command` (message `id`) with whatever arrived with it.
    async fn apply(&self, id: Uuid, command: Command) -> Result<Outcome, sqlx::Error> {
        match self.batcher.submit((id, command)).await {
            Ok(result) => result,
            Err(Gone(Some((id, command)))) => self.store.handle_command(id, &command).await,
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
) -> Vec<Result<Outcome, sqlx::Error>> {
    if jobs.len() > 1 {
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&i| jobs[i].0.1.order_id());
        let sorted: Vec<_> = order
            .iter()
            .map(|&i| {
                let ((id, command), span) = &jobs[i];
                (*id, command, span.clone())
            })
            .collect();
        match store.handle_commands(&sorted).await {
            Ok(outcomes) => {
                let mut results: Vec<Option<Outcome>> = vec![None; jobs.len()];
                for (i, outcome) in order.into_iter().zip(outcomes) {
                    results[i] = Some(outcome);
                }
                return results
                    .into_iter()
                    .map(|r| r.ok_or(sqlx::Error::WorkerCrashed))
                    .collect();
            }
            Err(error) => {
                tracing::warn!(%error, commands = jobs.len(), "command batch failed; applying its commands one by one");
            }
        }
    }
    let mut results = Vec::with_capacity(jobs.len());
    for ((id, command), span) in &jobs {
        results.push(
            store
                .handle_command(*id, command)
                .instrument(span.clone())
                .await,
        );
    }
    results
}

/// Handles one delivery.
pub async fn handle(commands: &Commands, message: Incoming) -> Handled {
    let Some(id) = message.id else {
        tracing::error!(kind = ?message.kind, "command without a UUID message_id; dead-lettering");
        return Handled::Reject;
    };
    let command: Command = match serde_json::from_slice(&message.payload) {
        Ok(c) => c,
        Err(error) => {
            tracing::error!(%id, %error, "unreadable command; dead-lettering");
            return Handled::Reject;
        }
    };
    let kind = command.kind();
    match commands.apply(id, command).await {
        Ok(outcome) => {
            metrics::counter!(COMMANDS_METRIC, "kind" => kind, "outcome" => outcome.label())
                .increment(1);
            if outcome == Outcome::Duplicate {
                tracing::info!(%id, kind, "duplicate command skipped");
            }
            Handled::Ack
        }
        Err(error) => {
            tracing::warn!(%id, %error, "command failed; requeueing");
            Handled::Retry
        }
    }
}
