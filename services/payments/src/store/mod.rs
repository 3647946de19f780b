//! Payments in Postgres. Every change is one transaction holding the
//! payment's row lock: the inbox or webhook dedupe rows (event id, and
//! transmission id for PayPal), the new status and its history row, the
//! event for checkout (outbox) and the provider call all commit together
//! or not at all.
//!
//! A webhook is a claim, not a fact: before the state machine acts on one,
//! the provider's own record is read ([`Simulator::retrieve`]) and must
//! back it, amount and currency included; one it doesn't back is recorded
//! as `unconfirmed` and changes nothing.

use std::sync::Arc;

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use storefront_kit::inbox::{self, InboxTable};
use storefront_kit::outbox::{self, NewMessage, OutboxTable};
use uuid::Uuid;

use crate::contract::{Command, Event, Provider};
use crate::payment::{self, Announce, Call, Input, Status, Step};
use crate::provider::{Simulator, Unconfirmed};
use crate::webhook;

mod seen;
mod webhooks;

pub use seen::SeenEvents;

/// The outbox table and its NOTIFY channel.
pub fn outbox_table() -> OutboxTable {
    OutboxTable::new("outbox", "payments_outbox")
}

/// Counter of webhooks the provider's record did not back, by reason.
pub const UNCONFIRMED_METRIC: &str = "payments_webhooks_unconfirmed_total";

/// The inbox table.
pub fn inbox_table() -> InboxTable {
    InboxTable::new("inbox")
}

/// What handling a message or webhook came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The state machine took it (possibly changing nothing but announcing).
    Applied,
    /// Seen before (same message id or provider event id): nothing done.
    Duplicate,
    /// The same transmission (id and body) again, an honest resend of a
    /// delivery already handled: nothing done.
    DuplicateTransmission,
    /// A used transmission id with another body: nothing done, refused.
    TransmissionReused,
    /// The provider's record doesn't back the webhook: nothing done.
    Unconfirmed(Unconfirmed),
    /// Not applicable; the reason is logged and recorded.
    Ignored(&'static str),
}

impl Outcome {
    /// A label for metrics and the webhook table.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::DuplicateTransmission => "duplicate_transmission",
            Self::TransmissionReused => "transmission_reused",
            Self::Unconfirmed(_) => "unconfirmed",
            Self::Ignored(reason) => reason,
        }
    }
}

/// A PayPal-style transmission: accepted once.
#[derive(Debug, Clone, Copy)]
pub struct Transmission<'a> {
    /// `Paypal-Transmission-Id`, signed.
    pub id: &'a str,
    /// [`crate::signature::body_digest`] of the body.
    pub body_sha256: &'a str,
}

/// A payment row.
#[derive(utoipa::ToSchema, Debug, Clone, sqlx::FromRow, Serialize)]
pub struct PaymentRow {
    /// The session id.
    pub payment_id: Uuid,
    /// The order.
    pub order_id: Uuid,
    /// `stripe` or `paypal`.
    pub provider: String,
    /// The provider's session id.
    pub provider_ref: String,
    /// The amount.
    pub amount_cents: i64,
    /// ISO 4217.
    pub currency: String,
    /// Last four digits of the card.
    pub card_last4: String,
    /// The status (see [`Status`]).
    pub status: String,
    /// Bumped on every change.
    pub version: i32,
}

/// One history row.
#[derive(utoipa::ToSchema, Debug, Clone, sqlx::FromRow, Serialize)]
pub struct TransitionRow {
    /// Before (none for the creation).
    pub from_status: Option<String>,
    /// After.
    pub to_status: String,
    /// The command or provider event.
    pub cause: String,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
}

const PAYMENT_COLUMNS: &str = "payment_id, order_id, provider, provider_ref, amount_cents, \
     currency::text AS currency, card_last4::text AS card_last4, status, version";

/// The payments store.
#[derive(Clone)]
pub struct Store {
    /// The service's pool.
    pub pool: PgPool,
    /// The provider whose API the changes call.
    pub provider: Arc<Simulator>,
    /// Events for checkout.
    outbox: OutboxTable,
    /// Commands handled.
    inbox: InboxTable,
    /// Where events for checkout go.
    events_queue: String,
    /// Lab switches (`storefront outbox`): off unless a lab request sets them.
    pub lab: crate::outbox_lab::OutboxLab,
    /// Provider events known to be recorded: a duplicate is answered
    /// without a transaction.
    seen: Arc<SeenEvents>,
}

impl Store {
    /// A store on `pool` calling `provider`, announcing to `events_queue`.
    pub fn new(pool: PgPool, provider: Arc<Simulator>, events_queue: String) -> Self {
        Self {
            pool,
            provider,
            events_queue,
            outbox: outbox_table(),
            inbox: inbox_table(),
            lab: crate::outbox_lab::OutboxLab::default(),
            seen: Arc::default(),
        }
    }

    /// This store with `lab`'s switches (shared with the lab route).
    pub fn with_lab(mut self, lab: crate::outbox_lab::OutboxLab) -> Self {
        self.lab = lab;
        self
    }

    /// Applies a command from checkout, once per message id.
    #[tracing::instrument(skip_all, fields(%message_id, kind = command.kind(), order_id = %command.order_id()))]
    pub async fn handle_command(
        &self,
        message_id: Uuid,
        command: &Command,
    ) -> Result<Outcome, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let outcome = self.command_on(&mut tx, message_id, command).await?;
        tx.commit().await?;
        log_ignored(&outcome);
        Ok(outcome)
    }

    /// Applies several commands in one transaction, each once per message
    /// id as [`Store::handle_command`] would, in order; their outcomes in
    /// that order. One commit for the batch instead of one per command
    /// (issue 15: the relay publishes commands in bursts, and the consumer
    /// receives up to its prefetch at once). All or nothing: on an error
    /// nothing is written, and the caller applies them one by one.
    /// Each command is applied in its message's `span`, so what it sends
    /// (outbox rows) carries that message's trace.
    #[tracing::instrument(skip_all, fields(commands = commands.len()))]
    pub async fn handle_commands(
        &self,
        commands: &[(Uuid, &Command, tracing::Span)],
    ) -> Result<Vec<Outcome>, sqlx::Error> {
        use tracing::Instrument as _;
        let mut tx = self.pool.begin().await?;
        let mut outcomes = Vec::with_capacity(commands.len());
        for (message_id, command, span) in commands {
            let applied = self.command_on(&mut tx, *message_id, command);
            outcomes.push(applied.instrument(span.clone()).await?);
        }
        tx.commit().await?;
        outcomes.iter().for_each(log_ignored);
        Ok(outcomes)
    }

    /// The body of [`Store::handle_command`] on `tx`: the inbox row, then
    /// the command's effect (nothing for a duplicate).
    async fn command_on(
        &self,
        tx: &mut PgConnection,
        message_id: Uuid,
        command: &Command,
    ) -> Result<Outcome, sqlx::Error> {
        if !inbox::record(&mut *tx, &self.inbox, message_id, command.kind()).await? {
            return Ok(Outcome::Duplicate);
        }
        match command {
            Command::AuthorizePayment {
                order_id,
                amount_cents,
                currency,
                card_number,
                provider,
            } => {
                self.open(
                    tx,
                    *order_id,
                    *amount_cents,
                    currency,
                    card_number,
                    *provider,
                )
                .await
            }
            Command::CapturePayment { order_id } => {
                self.by_order(tx, *order_id, Input::Capture).await
            }
            Command::VoidPayment { order_id } => self.by_order(tx, *order_id, Input::Void).await,
        }
    }

    /// Opens the order's payment session and asks the provider to
    /// authorize; a second request for the same order changes nothing.
    async fn open(
        &self,
        db: &mut PgConnection,
        order_id: Uuid,
        amount_cents: i64,
        currency: &str,
        card: &str,
        provider: Provider,
    ) -> Result<Outcome, sqlx::Error> {
        if amount_cents <= 0 || currency.len() != 3 || card.len() < 4 {
            return Ok(Outcome::Ignored("invalid authorize command"));
        }
        let payment_id = Uuid::new_v4();
        let provider_ref = webhook::intent_id(provider, payment_id);
        // The payment and its first history row in one statement.
        let inserted = sqlx::query(
            "WITH opened AS ( \
                 INSERT INTO payments (payment_id, order_id, provider, provider_ref, amount_cents, \
                     currency, card_last4, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') ON CONFLICT (order_id) DO NOTHING \
                 RETURNING payment_id) \
             INSERT INTO payment_transitions (payment_id, from_status, to_status, cause) \
             SELECT payment_id, NULL, 'pending', 'authorize_command' FROM opened",
        )
        .bind(payment_id)
        .bind(order_id)
        .bind(provider.as_str())
        .bind(&provider_ref)
        .bind(amount_cents)
        .bind(currency)
        .bind(&card[card.len() - 4..])
        .execute(&mut *db)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            return Ok(Outcome::Ignored("payment already open for this order"));
        }
        self.provider
            .authorize(db, provider, payment_id, card, amount_cents, currency)
            .await?;
        Ok(Outcome::Applied)
    }

    /// Locks the order's payment and feeds it `input`.
    async fn by_order(
        &self,
        db: &mut PgConnection,
        order_id: Uuid,
        input: Input,
    ) -> Result<Outcome, sqlx::Error> {
        let payment: Option<PaymentRow> = sqlx::query_as(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 FOR UPDATE"
        ))
        .bind(order_id)
        .fetch_optional(&mut *db)
        .await?;
        match payment {
            Some(payment) => self.apply(db, &payment, input, input.as_str()).await,
            None => Ok(Outcome::Ignored("no payment for this order")),
        }
    }

    /// Runs the state machine on a locked payment and writes what it says.
    async fn apply(
        &self,
        db: &mut PgConnection,
        payment: &PaymentRow,
        input: Input,
        cause: &str,
    ) -> Result<Outcome, sqlx::Error> {
        let Some(from) = Status::parse(&payment.status) else {
            return Ok(Outcome::Ignored("unknown stored status"));
        };
        let Some(Step { to, announce, call }) = payment::step(from, input) else {
            tracing::debug!(
                from = from.as_str(),
                input = input.as_str(),
                "input ignored in this status"
            );
            return Ok(Outcome::Ignored("not applicable in this status"));
        };
        if to != from {
            // The new status and its history row in one statement.
            sqlx::query(
                "WITH changed AS ( \
                     UPDATE payments SET status = $3, version = version + 1, updated_at = now() \
                     WHERE payment_id = $1 RETURNING payment_id) \
                 INSERT INTO payment_transitions (payment_id, from_status, to_status, cause) \
                 SELECT payment_id, $2, $3, $4 FROM changed",
            )
            .bind(payment.payment_id)
            .bind(from.as_str())
            .bind(to.as_str())
            .bind(cause)
            .execute(&mut *db)
            .await?;
        }
        if let Some(announce) = announce {
            let event = event_for(payment, announce);
            let payload = serde_json::to_value(&event).expect("events serialize");
            let message = NewMessage {
                id: Uuid::new_v4(),
                destination: &self.events_queue,
                kind: event.kind(),
                payload: &payload,
            };
            // The lab's control arm publishes it directly instead (off by default).
            if !self.lab.publish_directly(&message).await? {
                outbox::enqueue(&mut *db, &self.outbox, &message).await?;
            }
            self.lab.hold().await;
        }
        match call {
            Some(Call::Capture) => self.provider.capture(db, &payment.provider_ref).await?,
            Some(Call::Void) => self.provider.void(db, &payment.provider_ref).await?,
            None => {}
        }
        Ok(Outcome::Applied)
    }

    /// The order's payment and its history.
    pub async fn payment_of_order(
        &self,
        order_id: Uuid,
    ) -> Result<Option<(PaymentRow, Vec<TransitionRow>)>, sqlx::Error> {
        let payment: Option<PaymentRow> = sqlx::query_as(&format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1"
        ))
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(payment) = payment else {
            return Ok(None);
        };
        let history = sqlx::query_as(
            "SELECT from_status, to_status, cause, at FROM payment_transitions \
             WHERE payment_id = $1 ORDER BY id",
        )
        .bind(payment.payment_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some((payment, history)))
    }
}

/// Says so when a command was ignored.
fn log_ignored(outcome: &Outcome) {
    if let Outcome::Ignored(reason) = outcome {
        tracing::warn!(reason, "command ignored");
    }
}

/// The event that announces `announce` for `payment`.
fn event_for(payment: &PaymentRow, announce: Announce) -> Event {
    let (order_id, payment_id) = (payment.order_id, payment.payment_id);
    match announce {
        Announce::Authorized => Event::PaymentAuthorized {
            order_id,
            payment_id,
        },
        Announce::Declined => Event::PaymentDeclined {
            order_id,
            payment_id,
        },
        Announce::Captured => Event::PaymentCaptured {
            order_id,
            payment_id,
            amount_cents: payment.amount_cents,
        },
        Announce::CaptureFailed => Event::PaymentCaptureFailed {
            order_id,
            payment_id,
        },
        Announce::Voided => Event::PaymentVoided {
            order_id,
            payment_id,
        },
    }
}
