//! A payment provider simulated inside the fleet, behaving the way real
//! sandboxes do: the card number picks the behaviour, answers come later by
//! webhook (signed, at least once, sometimes twice, in random order), and
//! every call is idempotent by the session's id.
//!
//! Its state (`provider_intents`, `provider_deliveries`) lives beside the
//! payments tables, and its API calls are made on the caller's transaction:
//! a real provider call would go over HTTPS with the payment id as its
//! idempotency key; here the call and the payment change commit together,
//! so a crash of the payments process loses neither. The [`delivery`]
//! worker then sends the webhooks it owes to the payments service's own
//! endpoints, over HTTP.
//!
//! Like a real PSP it can also be asked what it holds for a session
//! ([`Simulator::retrieve`], Stripe's `GET /v1/payment_intents/{id}`,
//! PayPal's `GET /v2/payments/authorizations/{id}`): payments believes a
//! webhook only once the provider's own record confirms it
//! ([`Record::confirms`]).

mod cards;
pub mod delivery;
pub mod due;
mod record;
#[cfg(test)]
mod tests;

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::config::ProviderConfig;
use crate::contract::Provider;
use crate::webhook::{self, Kind};

pub use cards::{
    Behaviour, CARD_APPROVE, CARD_DECLINE, CARD_FAIL_CAPTURE, CARD_NEVER_CONFIRM, luhn_valid,
};
pub use record::{Record, Unconfirmed};

/// The simulated provider's API.
pub struct Simulator {
    /// Seeded: duplicates and delays are reproducible for one seed and order of calls.
    rng: Mutex<StdRng>,
    /// Percent of events delivered twice.
    duplicate_percent: u8,
    /// Upper bound of a delivery's random delay, in ms.
    max_delay_ms: u64,
}

/// A row of the provider's ledger.
#[derive(Debug, sqlx::FromRow)]
struct Intent {
    provider: String,
    behaviour: String,
    state: String,
    amount_cents: i64,
    currency: String,
}

impl Simulator {
    /// The provider's record of `intent`, read as its API would answer
    /// (on the caller's transaction, like every call to it here).
    #[tracing::instrument(skip_all, fields(intent))]
    pub async fn retrieve(
        &self,
        db: &mut PgConnection,
        intent: &str,
    ) -> Result<Option<Record>, sqlx::Error> {
        sqlx::query_as(
            "SELECT state, amount_cents, currency::text AS currency, captures              FROM provider_intents WHERE intent_id = $1",
        )
        .bind(intent)
        .fetch_optional(db)
        .await
    }

    /// A provider behaving per `config`.
    pub fn new(config: &ProviderConfig) -> Self {
        Self {
            rng: Mutex::new(StdRng::seed_from_u64(config.seed)),
            duplicate_percent: config.duplicate_percent,
            max_delay_ms: config.max_delay.as_millis() as u64,
        }
    }

    /// Opens and authorizes a session for `payment_id`; returns its id.
    /// Idempotent: asking again for the same payment changes nothing.
    #[tracing::instrument(skip_all, fields(%payment_id))]
    pub async fn authorize(
        &self,
        db: &mut PgConnection,
        provider: Provider,
        payment_id: Uuid,
        card: &str,
        amount_cents: i64,
        currency: &str,
    ) -> Result<String, sqlx::Error> {
        let intent = webhook::intent_id(provider, payment_id);
        let behaviour = Behaviour::of_card(card);
        let (state, answer) = match behaviour {
            Behaviour::Approve | Behaviour::FailCapture => ("authorized", Some(Kind::Authorized)),
            Behaviour::Decline => ("declined", Some(Kind::Declined)),
            Behaviour::NeverConfirm => ("processing", None),
        };
        let created = sqlx::query(
            "INSERT INTO provider_intents \
                 (intent_id, provider, payment_id, behaviour, amount_cents, currency, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (intent_id) DO NOTHING",
        )
        .bind(&intent)
        .bind(provider.as_str())
        .bind(payment_id)
        .bind(behaviour.as_str())
        .bind(amount_cents)
        .bind(currency)
        .bind(state)
        .execute(&mut *db)
        .await?
        .rows_affected()
            == 1;
        if created && let Some(kind) = answer {
            // As the ledger gives it back (`char(3)::text` drops trailing blanks).
            let money = (amount_cents, currency.trim_end_matches(' '));
            self.schedule(db, provider, &intent, money, kind).await?;
        }
        Ok(intent)
    }

    /// Captures an authorized session (or says again how the capture went).
    #[tracing::instrument(skip_all, fields(intent))]
    pub async fn capture(&self, db: &mut PgConnection, intent: &str) -> Result<(), sqlx::Error> {
        let Some(row) = self.lock(db, intent).await? else {
            return Ok(());
        };
        let answer = match (row.state.as_str(), Behaviour::parse(&row.behaviour)) {
            ("authorized", Behaviour::FailCapture) => {
                self.set_state(db, intent, "capture_failed", 0).await?;
                Some(Kind::CaptureFailed)
            }
            ("authorized", _) => {
                self.set_state(db, intent, "captured", 1).await?;
                Some(Kind::Captured)
            }
            ("captured", _) => Some(Kind::Captured),
            ("capture_failed", _) => Some(Kind::CaptureFailed),
            _ => None,
        };
        if let Some(kind) = answer {
            self.schedule_for(db, intent, &row, kind).await?;
        }
        Ok(())
    }

    /// Releases a session's authorization (a session still processing is
    /// cancelled silently, as "never confirm" cards never answer).
    #[tracing::instrument(skip_all, fields(intent))]
    pub async fn void(&self, db: &mut PgConnection, intent: &str) -> Result<(), sqlx::Error> {
        let Some(row) = self.lock(db, intent).await? else {
            return Ok(());
        };
        let answer = match row.state.as_str() {
            "authorized" | "capture_failed" => {
                self.set_state(db, intent, "canceled", 0).await?;
                Some(Kind::Voided)
            }
            "processing" => {
                self.set_state(db, intent, "canceled", 0).await?;
                None
            }
            "canceled" if Behaviour::parse(&row.behaviour) != Behaviour::NeverConfirm => {
                Some(Kind::Voided)
            }
            _ => None,
        };
        if let Some(kind) = answer {
            self.schedule_for(db, intent, &row, kind).await?;
        }
        Ok(())
    }

    /// [`Simulator::schedule`] for a locked ledger row (its provider,
    /// amount and currency are the session's: no need to read them again).
    async fn schedule_for(
        &self,
        db: &mut PgConnection,
        intent: &str,
        row: &Intent,
        kind: Kind,
    ) -> Result<(), sqlx::Error> {
        let provider = Provider::parse(&row.provider).unwrap_or(Provider::Stripe);
        let money = (row.amount_cents, row.currency.as_str());
        self.schedule(db, provider, intent, money, kind).await
    }

    async fn lock(
        &self,
        db: &mut PgConnection,
        intent: &str,
    ) -> Result<Option<Intent>, sqlx::Error> {
        sqlx::query_as(
            "SELECT provider, behaviour, state, amount_cents, currency::text AS currency \
             FROM provider_intents WHERE intent_id = $1 FOR UPDATE",
        )
        .bind(intent)
        .fetch_optional(db)
        .await
    }

    async fn set_state(
        &self,
        db: &mut PgConnection,
        intent: &str,
        state: &str,
        captured: i32,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE provider_intents SET state = $2, captures = captures + $3, updated_at = now() \
             WHERE intent_id = $1",
        )
        .bind(intent)
        .bind(state)
        .bind(captured)
        .execute(db)
        .await?;
        Ok(())
    }

    /// Schedules the webhook for `kind` about session `intent` of
    /// `provider` for `(amount_cents, currency)`: once, or twice (a
    /// duplicate with the same event id), each after a random delay.
    async fn schedule(
        &self,
        db: &mut PgConnection,
        provider: Provider,
        intent: &str,
        (amount_cents, currency): (i64, &str),
        kind: Kind,
    ) -> Result<(), sqlx::Error> {
        let event_id = webhook::new_event_id(provider);
        let body = webhook::body(
            provider,
            &event_id,
            kind,
            intent,
            amount_cents,
            currency,
            chrono::Utc::now(),
        );
        let delays: Vec<f64> = {
            let mut rng = self.rng.lock().expect("not poisoned");
            let copies = if rng.random_range(0..100) < self.duplicate_percent {
                2
            } else {
                1
            };
            (0..copies)
                .map(|_| rng.random_range(0..=self.max_delay_ms) as f64 / 1000.0)
                .collect()
        };
        // The sender hears when each copy falls due once this commits
        // (NOTIFY is delivered on commit), so it never wakes for a delivery
        // it cannot see yet ([`due`]).
        sqlx::query(
            "WITH scheduled AS ( \
                 INSERT INTO provider_deliveries (provider, event_id, event_type, intent_id, body, deliver_at) \
                 SELECT $1, $2, $3, $4, $5, now() + make_interval(secs => d) FROM unnest($6::float8[]) AS d \
                 RETURNING deliver_at) \
             SELECT pg_notify($7, (extract(epoch FROM deliver_at) * 1000)::bigint::text) \
             FROM scheduled",
        )
        .bind(provider.as_str())
        .bind(&event_id)
        .bind(kind.event_type(provider))
        .bind(intent)
        .bind(&body)
        .bind(&delays)
        .bind(due::CHANNEL)
        .execute(db)
        .await?;
        Ok(())
    }
}
