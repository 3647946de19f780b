//! Sagas in Postgres. A transition is one transaction: the inbox row (for
//! an event), the saga row's new state — written only if its version is
//! still the one read (optimistic concurrency) — its history row and the
//! command it sends (outbox). Nothing is sent before that commits.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{FromRow, PgPool, Row};
use storefront_kit::inbox::{self, InboxTable};
use storefront_kit::outbox::{self, NewMessage, OutboxTable};
use storefront_payments::contract::{Command, Provider};
use uuid::Uuid;

use crate::catalog::Item;
use crate::saga::{self, Input, Send, State, Timeouts, Transition, Wake};

/// How often an event retries its transition after losing OCC races.
const MAX_OCC_RETRIES: usize = 8;

/// The outbox table and its NOTIFY channel.
pub fn outbox_table() -> OutboxTable {
    OutboxTable::new("outbox", "checkout_outbox")
}

/// The inbox table.
pub fn inbox_table() -> InboxTable {
    InboxTable::new("inbox")
}

/// A saga row.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct SagaRow {
    /// The order (and saga) id.
    pub order_id: Uuid,
    /// Who ordered (`X-User-Id`); `None` for the lab's direct orders.
    pub customer_id: Option<Uuid>,
    /// See [`State`].
    pub state: String,
    /// The first failure, if any.
    pub failure: Option<String>,
    /// Bumped by every transition; the OCC token.
    pub version: i32,
    /// What is ordered.
    pub items: Json<Vec<Item>>,
    /// The card (a sandbox test number); never shown.
    #[serde(skip)]
    pub card_number: String,
    /// `stripe` or `paypal`.
    pub provider: String,
    /// ISO 4217.
    pub currency: String,
    /// Σ price × quantity, once priced.
    pub amount_cents: Option<i64>,
    /// HTTP step retries since the last transition.
    pub attempts: i32,
    /// When the sweeper looks again (NULL once terminal).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The reservation step gives up after this.
    pub reserve_deadline: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last transition.
    pub updated_at: DateTime<Utc>,
    /// Reached a terminal state.
    pub finished_at: Option<DateTime<Utc>>,
}

impl SagaRow {
    /// The parsed state (a stored state is always one of ours: CHECK).
    pub fn state(&self) -> State {
        State::parse(&self.state).unwrap_or(State::Failed)
    }
}

/// One history row.
#[derive(utoipa::ToSchema, Debug, Clone, sqlx::FromRow, Serialize)]
pub struct StepRow {
    /// The version this transition produced.
    pub version: i32,
    /// Before (none for the creation).
    pub from_state: Option<String>,
    /// After.
    pub to_state: String,
    /// What caused it.
    pub cause: String,
    /// The command it sent, if any.
    pub command: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

const SAGA_COLUMNS: &str = "order_id, customer_id, state, failure, version, items, card_number, provider, \
     currency::text AS currency, amount_cents, attempts, next_attempt_at, reserve_deadline, \
     created_at, updated_at, finished_at";

/// A checkout request, validated.
#[derive(Debug, Clone)]
pub struct NewSaga {
    /// The client's `Idempotency-Key`, scoped to `customer_id`.
    pub idempotency_key: String,
    /// Who orders; `None` for the lab's direct orders (one shared key space).
    pub customer_id: Option<Uuid>,
    /// The request in canonical form, compared on a replay.
    pub request: serde_json::Value,
    /// Sorted by product id.
    pub items: Vec<Item>,
    /// The card.
    pub card_number: String,
    /// The provider.
    pub provider: Provider,
    /// ISO 4217.
    pub currency: String,
}

/// What creating a saga came to.
#[derive(Debug)]
pub enum Created {
    /// A new saga and its first (only) history row.
    New(SagaRow, StepRow),
    /// The key's saga and its history, for a repeated identical request.
    Replay(SagaRow, Vec<StepRow>),
    /// The key is bound to a different request.
    KeyReused,
}

/// What applying an input came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The saga moved (or sent a command again).
    Moved(Transition),
    /// The input makes no sense in the saga's state: nothing changed.
    Ignored,
    /// Another transition got there first (for inputs tied to a version).
    Conflict,
    /// The event was handled before (inbox).
    Duplicate,
    /// No such saga.
    Missing,
}

/// What an event came to on its transaction, before the commit.
enum Step {
    /// Nothing moved (or, for [`Applied::Conflict`], nothing but the inbox
    /// row was written).
    Done(Applied),
    /// The saga as read moved by the transition.
    Moved(Box<SagaRow>, Transition),
}

/// The checkout store.
#[derive(Clone)]
pub struct Store {
    /// The service's pool.
    pub pool: PgPool,
    /// Deadlines used by transitions.
    timeouts: Timeouts,
    /// How long a saga in an HTTP step is left to the task working on it.
    lease_secs: f64,
    /// Commands for payments.
    outbox: OutboxTable,
    /// Events from payments.
    inbox: InboxTable,
    /// Where commands for payments go.
    commands_queue: String,
}

impl Store {
    /// A store on `pool`, sending commands to `commands_queue`.
    pub fn new(
        pool: PgPool,
        timeouts: Timeouts,
        lease: std::time::Duration,
        commands_queue: String,
    ) -> Self {
        Self {
            pool,
            commands_queue,
            timeouts,
            lease_secs: lease.as_secs_f64(),
            outbox: outbox_table(),
            inbox: inbox_table(),
        }
    }

    /// Starts a saga in `reserving`, or finds the key's saga. Keys are
    /// scoped per customer: another customer's identical key is another
    /// saga, never a replay of this one.
    #[tracing::instrument(skip_all)]
    pub async fn create(
        &self,
        new: &NewSaga,
        reserve_timeout: std::time::Duration,
    ) -> Result<Created, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let order_id = Uuid::new_v4();
        // The new row comes back from the INSERT and its first history row
        // from its own: the response and the first step are built from them
        // without reading the saga again (issue 15: each read is a commit).
        let inserted: Option<SagaRow> = sqlx::query_as(&format!(
            "INSERT INTO sagas (order_id, idempotency_key, request, items, card_number, provider, \
                 currency, state, next_attempt_at, reserve_deadline, customer_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'reserving', \
                 now() + make_interval(secs => $8), now() + make_interval(secs => $9), $10) \
             ON CONFLICT (customer_id, idempotency_key) DO NOTHING \
             RETURNING {SAGA_COLUMNS}"
        ))
        .bind(order_id)
        .bind(&new.idempotency_key)
        .bind(&new.request)
        .bind(Json(&new.items))
        .bind(&new.card_number)
        .bind(new.provider.as_str())
        .bind(&new.currency)
        .bind(self.lease_secs)
        .bind(reserve_timeout.as_secs_f64())
        .bind(new.customer_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(saga) = inserted else {
            // The key's saga and its history on the same transaction: a
            // replay is one commit, not three (issue 15).
            let row = sqlx::query(&format!(
                "SELECT {SAGA_COLUMNS}, request FROM sagas \
                     WHERE idempotency_key = $1 AND customer_id IS NOT DISTINCT FROM $2"
            ))
            .bind(&new.idempotency_key)
            .bind(new.customer_id)
            .fetch_one(&mut *tx)
            .await?;
            let request: serde_json::Value = row.try_get("request")?;
            if request != new.request {
                tx.commit().await?;
                return Ok(Created::KeyReused);
            }
            let saga = SagaRow::from_row(&row)?;
            let history = Self::history_on(&mut tx, saga.order_id).await?;
            tx.commit().await?;
            return Ok(Created::Replay(saga, history));
        };
        let first: StepRow = sqlx::query_as(
            "INSERT INTO saga_steps (order_id, version, from_state, to_state, cause) \
             VALUES ($1, 1, NULL, 'reserving', 'checkout_requested') \
             RETURNING version, from_state, to_state, cause, command, at",
        )
        .bind(order_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Created::New(saga, first))
    }

    /// The saga, if any.
    pub async fn load(&self, order_id: Uuid) -> Result<Option<SagaRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "SELECT {SAGA_COLUMNS} FROM sagas WHERE order_id = $1"
        ))
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// The saga's history, oldest first.
    pub async fn history(&self, order_id: Uuid) -> Result<Vec<StepRow>, sqlx::Error> {
        let mut conn = self.pool.acquire().await?;
        Self::history_on(&mut conn, order_id).await
    }

    /// [`Store::history`] on `db`.
    async fn history_on(
        db: &mut sqlx::PgConnection,
        order_id: Uuid,
    ) -> Result<Vec<StepRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT version, from_state, to_state, cause, command, at FROM saga_steps \
             WHERE order_id = $1 ORDER BY version",
        )
        .bind(order_id)
        .fetch_all(db)
        .await
    }

    /// Applies an event from payments, once per message id, retrying lost
    /// OCC races against fresh reads.
    pub async fn apply_event(
        &self,
        order_id: Uuid,
        input: Input,
        message: (Uuid, &str),
    ) -> Result<Applied, sqlx::Error> {
        for _ in 0..MAX_OCC_RETRIES {
            match self.apply_message(order_id, input, message).await? {
                Applied::Conflict => continue,
                other => return Ok(other),
            }
        }
        Ok(Applied::Conflict)
    }

    /// Applies an input observed on `saga` as read (a step result or a
    /// deadline): if the saga moved since (its version changed), the input
    /// is stale and [`Applied::Conflict`]. The saga is not read again: the
    /// version guard on the write says whether it is still as read, and a
    /// transition depends only on the state and the immutable order.
    pub async fn apply_at(
        &self,
        saga: &SagaRow,
        input: Input,
        amount_cents: Option<i64>,
    ) -> Result<Applied, sqlx::Error> {
        let Some(t) = saga::next(saga.state(), input, &self.timeouts) else {
            return Ok(Applied::Ignored);
        };
        // One statement when nothing is sent (no transaction to open); the
        // command's outbox row, when there is one, commits with the move.
        let moved = if t.send.is_some() {
            let mut tx = self.pool.begin().await?;
            let moved = self.write(&mut tx, saga, input, &t, amount_cents).await?;
            if moved {
                tx.commit().await?;
            }
            moved
        } else {
            let mut conn = self.pool.acquire().await?;
            self.write(&mut conn, saga, input, &t, amount_cents).await?
        };
        Ok(self.moved(saga, t, moved))
    }

    /// One attempt at applying an event: inbox row, read, transition.
    #[tracing::instrument(skip_all, fields(%order_id, input = input.as_str()))]
    async fn apply_message(
        &self,
        order_id: Uuid,
        input: Input,
        message: (Uuid, &str),
    ) -> Result<Applied, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        match self.message_on(&mut tx, order_id, input, message).await? {
            // Nothing but the inbox row was written: dropped with the
            // transaction, for the retry against a fresh read.
            Step::Done(Applied::Conflict) => Ok(Applied::Conflict),
            step => {
                tx.commit().await?;
                Ok(self.finished(step))
            }
        }
    }

    /// Applies several events from payments in one transaction, each once
    /// per message id as [`Store::apply_event`] would, in order; what each
    /// came to, in that order. One commit for the batch instead of one per
    /// event (issue 15: payments' relay publishes events in bursts, and the
    /// consumer holds up to its prefetch at once). An event that lost an
    /// OCC race leaves no inbox row in the batch and is applied again on
    /// its own, against a fresh read, after the batch commits. All or
    /// nothing: on an error nothing is written (the caller applies them one
    /// by one). Each is applied in its message's span, so the command it
    /// sends carries that message's trace.
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    pub async fn apply_events(
        &self,
        events: &[(Uuid, Input, (Uuid, &str), tracing::Span)],
    ) -> Result<Vec<Applied>, sqlx::Error> {
        use tracing::Instrument as _;
        let mut tx = self.pool.begin().await?;
        let mut steps = Vec::with_capacity(events.len());
        for (order_id, input, (id, kind), span) in events {
            let step = self
                .message_on(&mut tx, *order_id, *input, (*id, kind))
                .instrument(span.clone())
                .await?;
            if matches!(step, Step::Done(Applied::Conflict)) {
                // Un-record it: it is applied again after the commit.
                sqlx::query("DELETE FROM inbox WHERE message_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            steps.push(step);
        }
        tx.commit().await?;
        let mut applied = Vec::with_capacity(steps.len());
        for ((order_id, input, (id, kind), span), step) in events.iter().zip(steps) {
            applied.push(match step {
                Step::Done(Applied::Conflict) => {
                    self.apply_event(*order_id, *input, (*id, kind))
                        .instrument(span.clone())
                        .await?
                }
                step => self.finished(step),
            });
        }
        Ok(applied)
    }

    /// An event on `tx`: its inbox row, the saga as read there, and the
    /// transition written if the saga is still as read.
    async fn message_on(
        &self,
        tx: &mut sqlx::PgConnection,
        order_id: Uuid,
        input: Input,
        (id, kind): (Uuid, &str),
    ) -> Result<Step, sqlx::Error> {
        if !inbox::record(&mut *tx, &self.inbox, id, kind).await? {
            return Ok(Step::Done(Applied::Duplicate));
        }
        let saga: Option<SagaRow> = sqlx::query_as(&format!(
            "SELECT {SAGA_COLUMNS} FROM sagas WHERE order_id = $1"
        ))
        .bind(order_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(saga) = saga else {
            return Ok(Step::Done(Applied::Missing));
        };
        let Some(t) = saga::next(saga.state(), input, &self.timeouts) else {
            return Ok(Step::Done(Applied::Ignored));
        };
        if !self.write(tx, &saga, input, &t, None).await? {
            return Ok(Step::Done(Applied::Conflict));
        }
        Ok(Step::Moved(Box::new(saga), t))
    }

    /// What a committed step came to, counted.
    fn finished(&self, step: Step) -> Applied {
        match step {
            Step::Done(applied) => applied,
            Step::Moved(saga, t) => self.moved(&saga, t, true),
        }
    }

    /// Writes transition `t` of `saga` (as read) on `db`: the saga's new
    /// state if its version is still the one read, with its history row in
    /// the same statement, and the command's outbox row. `false` if the
    /// saga had moved (nothing written; the caller drops its transaction).
    #[tracing::instrument(skip_all, fields(order_id = %saga.order_id, input = input.as_str()))]
    async fn write(
        &self,
        db: &mut sqlx::PgConnection,
        saga: &SagaRow,
        input: Input,
        t: &Transition,
        amount_cents: Option<i64>,
    ) -> Result<bool, sqlx::Error> {
        let wake_secs: Option<f64> = match t.wake {
            Wake::Now => Some(self.lease_secs),
            Wake::After(d) => Some(d.as_secs_f64()),
            Wake::Never => None,
        };
        let command = t.send.map(|send| command_for(saga, send, amount_cents));
        let written = sqlx::query(
            "WITH moved AS ( \
                 UPDATE sagas SET state = $3, version = version + 1, \
                     failure = coalesce(failure, $4), amount_cents = coalesce($5, amount_cents), \
                     attempts = 0, next_attempt_at = now() + make_interval(secs => $6), \
                     updated_at = clock_timestamp(), \
                     finished_at = CASE WHEN $7 THEN clock_timestamp() END \
                 WHERE order_id = $1 AND version = $2 \
                 RETURNING order_id, version) \
             INSERT INTO saga_steps (order_id, version, from_state, to_state, cause, command) \
             SELECT order_id, version, $8, $3, $9, $10 FROM moved",
        )
        .bind(saga.order_id)
        .bind(saga.version)
        .bind(t.to.as_str())
        .bind(t.failure.map(saga::Failure::as_str))
        .bind(amount_cents)
        .bind(wake_secs)
        .bind(t.to.is_terminal())
        .bind(saga.state().as_str())
        .bind(input.as_str())
        .bind(command.as_ref().map(Command::kind))
        .execute(&mut *db)
        .await?;
        if written.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some(command) = command {
            let payload = serde_json::to_value(&command).expect("commands serialize");
            outbox::enqueue(
                &mut *db,
                &self.outbox,
                &NewMessage {
                    id: Uuid::new_v4(),
                    destination: &self.commands_queue,
                    kind: command.kind(),
                    payload: &payload,
                },
            )
            .await?;
        }
        Ok(true)
    }

    /// What a written (or lost) transition of `saga` came to, counted.
    fn moved(&self, saga: &SagaRow, t: Transition, moved: bool) -> Applied {
        if !moved {
            return Applied::Conflict;
        }
        let from = saga.state();
        metrics::counter!("checkout_saga_transitions_total", "from" => from.as_str(), "to" => t.to.as_str())
            .increment(1);
        if t.to.is_terminal() {
            let outcome = t
                .failure
                .or(saga.failure.as_deref().and_then(saga::Failure::parse));
            metrics::counter!("checkout_sagas_finished_total", "state" => t.to.as_str(),
                "failure" => outcome.map_or("none", saga::Failure::as_str))
            .increment(1);
        }
        Applied::Moved(t)
    }

    /// Records a failed HTTP step attempt (no transition): the saga is
    /// looked at again after `delay`.
    pub async fn retry_later(
        &self,
        order_id: Uuid,
        version: i32,
        delay: std::time::Duration,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE sagas SET attempts = attempts + 1, \
                 next_attempt_at = now() + make_interval(secs => $3) \
             WHERE order_id = $1 AND version = $2",
        )
        .bind(order_id)
        .bind(version)
        .bind(delay.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// When checkout's outbox handed `order_id`'s latest authorize command
    /// to the broker: `Some(Some(at))` once published, `Some(None)` while it
    /// still waits in the outbox, `None` when no such row is left (cleaned
    /// up). The authorization timeout runs from that moment (issue 12,
    /// defect c).
    pub async fn authorize_published_at(
        &self,
        order_id: Uuid,
    ) -> Result<Option<Option<DateTime<Utc>>>, sqlx::Error> {
        let row: Option<(Option<DateTime<Utc>>,)> = sqlx::query_as(&format!(
            "SELECT published_at FROM {} \
             WHERE kind = 'authorize_payment' AND payload->>'order_id' = $1 \
             ORDER BY created_at DESC LIMIT 1",
            self.outbox.name()
        ))
        .bind(order_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(published_at,)| published_at))
    }

    /// Claims up to `limit` sagas whose next look is due, leasing them so
    /// another sweep (or replica) leaves them alone meanwhile.
    pub async fn claim_due(&self, limit: i64) -> Result<Vec<SagaRow>, sqlx::Error> {
        sqlx::query_as(&format!(
            "UPDATE sagas SET next_attempt_at = now() + make_interval(secs => $2) \
             WHERE order_id IN (SELECT order_id FROM sagas \
                 WHERE next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1 \
                 FOR UPDATE SKIP LOCKED) \
             RETURNING {SAGA_COLUMNS}"
        ))
        .bind(limit)
        .bind(self.lease_secs)
        .fetch_all(&self.pool)
        .await
    }
}

/// The command `send` asks for, built from the saga.
fn command_for(saga: &SagaRow, send: Send, amount_cents: Option<i64>) -> Command {
    let order_id = saga.order_id;
    match send {
        Send::AuthorizePayment => Command::AuthorizePayment {
            order_id,
            amount_cents: amount_cents.or(saga.amount_cents).unwrap_or_default(),
            currency: saga.currency.clone(),
            card_number: saga.card_number.clone(),
            provider: Provider::parse(&saga.provider).unwrap_or(Provider::Stripe),
        },
        Send::CapturePayment => Command::CapturePayment { order_id },
        Send::VoidPayment => Command::VoidPayment { order_id },
    }
}
