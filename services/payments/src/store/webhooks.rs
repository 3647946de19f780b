//! Webhooks into the store: a claim, not a fact. Once per transmission and
//! once per provider event id, and only what the provider's own record
//! ([`crate::provider::Simulator::retrieve`]) backs, amount and currency included; one it
//! doesn't back is recorded as `unconfirmed` and changes nothing.
//!
//! An event id this process has seen committed ([`super::SeenEvents`]) is
//! a duplicate answered at once, with no transaction, unless the delivery
//! carries a transmission: that is still recorded, so a transmission id is
//! accepted once whatever it carries.

use sqlx::PgConnection;

use super::{Outcome, PAYMENT_COLUMNS, PaymentRow, Store, Transmission, UNCONFIRMED_METRIC};
use crate::contract::Provider;
use crate::payment::{self, Status};
use crate::provider::Unconfirmed;
use crate::webhook::{self, Money, ProviderEvent};

impl Store {
    /// Applies a verified provider webhook: once per transmission (when
    /// the provider has them) and once per provider event id, and only what
    /// the provider's own record confirms.
    #[tracing::instrument(skip_all, fields(provider = provider.as_str(), event_id = %event.event_id))]
    pub async fn handle_webhook(
        &self,
        provider: Provider,
        transmission: Option<Transmission<'_>>,
        event: &ProviderEvent,
        body: &serde_json::Value,
    ) -> Result<Outcome, sqlx::Error> {
        if transmission.is_none() && self.seen.contains(provider, &event.event_id) {
            return Ok(Outcome::Duplicate);
        }
        let mut tx = self.pool.begin().await?;
        // Transmission first, then the event: a concurrent twin waits on the
        // row's key and then finds it (or, if this one rolls back, takes it).
        if let Some(t) = transmission
            && let Some(seen) = self
                .record_transmission(&mut tx, provider, t, event)
                .await?
        {
            tx.rollback().await?;
            return Ok(seen);
        }
        let first = sqlx::query(
            "INSERT INTO webhook_events (provider, event_id, event_type, provider_ref, body, outcome) \
             VALUES ($1, $2, $3, $4, $5, 'received') ON CONFLICT (provider, event_id) DO NOTHING",
        )
        .bind(provider.as_str())
        .bind(&event.event_id)
        .bind(&event.event_type)
        .bind(&event.provider_ref)
        .bind(body)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !first {
            tx.commit().await?;
            // The insert met the committed row.
            self.seen.insert(provider, &event.event_id);
            return Ok(Outcome::Duplicate);
        }
        let outcome = match event.kind {
            None => Outcome::Ignored("event type not handled"),
            Some(kind) => {
                let payment: Option<PaymentRow> = sqlx::query_as(&format!(
                    "SELECT {PAYMENT_COLUMNS} FROM payments WHERE provider = $1 AND provider_ref = $2 FOR UPDATE"
                ))
                .bind(provider.as_str())
                .bind(&event.provider_ref)
                .fetch_optional(&mut *tx)
                .await?;
                match payment {
                    Some(payment) => self.confirmed(&mut tx, &payment, event, kind).await?,
                    None => Outcome::Ignored("unknown payment"),
                }
            }
        };
        sqlx::query("UPDATE webhook_events SET outcome = $3 WHERE provider = $1 AND event_id = $2")
            .bind(provider.as_str())
            .bind(&event.event_id)
            .bind(outcome.label())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.seen.insert(provider, &event.event_id);
        Ok(outcome)
    }

    /// Records a transmission; `None` if it is new, else what it was.
    async fn record_transmission(
        &self,
        db: &mut PgConnection,
        provider: Provider,
        t: Transmission<'_>,
        event: &ProviderEvent,
    ) -> Result<Option<Outcome>, sqlx::Error> {
        let inserted = sqlx::query(
            "INSERT INTO webhook_transmissions (provider, transmission_id, body_sha256, event_id) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (provider, transmission_id) DO NOTHING",
        )
        .bind(provider.as_str())
        .bind(t.id)
        .bind(t.body_sha256)
        .bind(&event.event_id)
        .execute(&mut *db)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            return Ok(None);
        }
        let stored: String = sqlx::query_scalar(
            "SELECT body_sha256 FROM webhook_transmissions WHERE provider = $1 AND transmission_id = $2",
        )
        .bind(provider.as_str())
        .bind(t.id)
        .fetch_one(&mut *db)
        .await?;
        Ok(Some(if stored == t.body_sha256 {
            Outcome::DuplicateTransmission
        } else {
            tracing::warn!(
                transmission_id = t.id,
                "a used transmission id came with another body"
            );
            Outcome::TransmissionReused
        }))
    }

    /// Feeds a webhook's `kind` to the locked payment if the state machine
    /// would act on it and the provider's record backs it.
    async fn confirmed(
        &self,
        db: &mut PgConnection,
        payment: &PaymentRow,
        event: &ProviderEvent,
        kind: webhook::Kind,
    ) -> Result<Outcome, sqlx::Error> {
        let applicable = Status::parse(&payment.status)
            .and_then(|from| payment::step(from, kind.input()))
            .is_some();
        if !applicable {
            // The state machine ignores it; `apply` says so.
            return self.apply(db, payment, kind.input(), &event.event_id).await;
        }
        let record = self.provider.retrieve(db, &payment.provider_ref).await?;
        let expected = Money::new(payment.amount_cents, &payment.currency);
        let verdict = record
            .ok_or(Unconfirmed::NoRecord)
            .and_then(|r| r.confirms(kind, event.claimed.as_ref(), &expected));
        if let Err(why) = verdict {
            tracing::warn!(
                reason = why.label(),
                %why,
                payment_id = %payment.payment_id,
                "webhook not confirmed by the provider; nothing changed"
            );
            metrics::counter!(UNCONFIRMED_METRIC, "reason" => why.label()).increment(1);
            return Ok(Outcome::Unconfirmed(why));
        }
        self.apply(db, payment, kind.input(), &event.event_id).await
    }
}
