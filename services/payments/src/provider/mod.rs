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

pub mod delivery;

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::config::ProviderConfig;
use crate::contract::Provider;
use crate::webhook::{self, Kind, Money};

/// Sandbox test card: approved, captured.
pub const CARD_APPROVE: &str = "4242424242424242";
/// Sandbox test card: declined at authorization.
pub const CARD_DECLINE: &str = "4000000000000002";
/// Sandbox test card: authorized, then the capture fails.
pub const CARD_FAIL_CAPTURE: &str = "4000000000000341";
/// Sandbox test card: the provider never answers.
pub const CARD_NEVER_CONFIRM: &str = "4000000000009995";

/// What the provider does with a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Authorize and capture.
    Approve,
    /// Refuse the authorization.
    Decline,
    /// Authorize, then fail the capture.
    FailCapture,
    /// Never send anything.
    NeverConfirm,
}

impl Behaviour {
    /// The behaviour a card number selects: the test cards above; any other
    /// number passing the Luhn check is approved, anything else declined.
    pub fn of_card(card: &str) -> Self {
        match card {
            CARD_DECLINE => Self::Decline,
            CARD_FAIL_CAPTURE => Self::FailCapture,
            CARD_NEVER_CONFIRM => Self::NeverConfirm,
            c if luhn_valid(c) => Self::Approve,
            _ => Self::Decline,
        }
    }

    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Decline => "decline",
            Self::FailCapture => "fail_capture",
            Self::NeverConfirm => "never_confirm",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "decline" => Self::Decline,
            "fail_capture" => Self::FailCapture,
            "never_confirm" => Self::NeverConfirm,
            _ => Self::Approve,
        }
    }
}

/// The Luhn checksum every card number carries: 12–19 digits.
pub fn luhn_valid(card: &str) -> bool {
    let digits: Vec<u32> = card.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() != card.len() || !(12..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| match (i % 2, d * 2) {
            (0, _) => d,
            (_, doubled) if doubled > 9 => doubled - 9,
            (_, doubled) => doubled,
        })
        .sum();
    sum.is_multiple_of(10)
}

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

/// The provider's record of a session, as its read API returns it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Record {
    /// `processing`, `authorized`, `declined`, `captured`,
    /// `capture_failed` or `canceled`.
    pub state: String,
    /// The amount of the session, in minor units.
    pub amount_cents: i64,
    /// Its currency, ISO 4217.
    pub currency: String,
    /// How many times money actually moved.
    pub captures: i32,
}

/// Why the provider's record does not back a webhook's claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unconfirmed {
    /// The provider holds no such session.
    #[error("the provider has no record of this session")]
    NoRecord,
    /// The event states no amount, so it can't be checked against the record.
    #[error("the event states no amount and currency")]
    NoAmount,
    /// The event's amount or currency isn't the provider's.
    #[error("the event says {claimed:?}, the provider holds {held:?}")]
    Amount {
        /// What the event says.
        claimed: Money,
        /// What the provider holds.
        held: Money,
    },
    /// The provider's session isn't for the amount this payment asked.
    #[error("the provider holds {held:?} for a payment of {expected:?}")]
    NotThisPayment {
        /// What the provider holds.
        held: Money,
        /// What the payment is for.
        expected: Money,
    },
    /// The provider's session is not in a state that the event claims.
    #[error("the event claims {claimed:?}, the provider's session is {state}")]
    State {
        /// What the event claims.
        claimed: Kind,
        /// The provider's state.
        state: String,
    },
}

impl Unconfirmed {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoRecord => "no_record",
            Self::NoAmount => "no_amount",
            Self::Amount { .. } => "amount_mismatch",
            Self::NotThisPayment { .. } => "not_this_payment",
            Self::State { .. } => "state_mismatch",
        }
    }
}

impl Record {
    /// The money the provider holds (or held) for the session.
    pub fn money(&self) -> Money {
        Money::new(self.amount_cents, &self.currency)
    }

    /// Whether this record backs an event claiming `kind` for `claimed`
    /// about a payment of `expected`: same money all three ways, and the
    /// provider's state is one that `kind` reports. An authorization is
    /// backed while the money is held or was moved; a capture only once
    /// money moved.
    pub fn confirms(
        &self,
        kind: Kind,
        claimed: Option<&Money>,
        expected: &Money,
    ) -> Result<(), Unconfirmed> {
        let held = self.money();
        if held != *expected {
            return Err(Unconfirmed::NotThisPayment {
                held,
                expected: expected.clone(),
            });
        }
        let claimed = claimed.ok_or(Unconfirmed::NoAmount)?;
        if *claimed != held {
            return Err(Unconfirmed::Amount {
                claimed: claimed.clone(),
                held,
            });
        }
        let backed = match kind {
            Kind::Authorized => {
                matches!(
                    self.state.as_str(),
                    "authorized" | "captured" | "capture_failed"
                )
            }
            Kind::Declined => self.state == "declined",
            Kind::Captured => self.state == "captured" && self.captures > 0,
            Kind::CaptureFailed => self.state == "capture_failed",
            Kind::Voided => self.state == "canceled",
        };
        if !backed {
            return Err(Unconfirmed::State {
                claimed: kind,
                state: self.state.clone(),
            });
        }
        Ok(())
    }
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
            self.schedule(db, &intent, kind).await?;
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
            self.schedule(db, intent, kind).await?;
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
            self.schedule(db, intent, kind).await?;
        }
        Ok(())
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

    /// Schedules the webhook for `kind`: once, or twice (a duplicate with
    /// the same event id), each after a random delay.
    async fn schedule(
        &self,
        db: &mut PgConnection,
        intent: &str,
        kind: Kind,
    ) -> Result<(), sqlx::Error> {
        let row: Intent = sqlx::query_as(
            "SELECT provider, behaviour, state, amount_cents, currency::text AS currency \
             FROM provider_intents WHERE intent_id = $1",
        )
        .bind(intent)
        .fetch_one(&mut *db)
        .await?;
        let provider = Provider::parse(&row.provider).unwrap_or(Provider::Stripe);
        let event_id = webhook::new_event_id(provider);
        let body = webhook::body(
            provider,
            &event_id,
            kind,
            intent,
            row.amount_cents,
            &row.currency,
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
        sqlx::query(
            "INSERT INTO provider_deliveries (provider, event_id, event_type, intent_id, body, deliver_at) \
             SELECT $1, $2, $3, $4, $5, now() + make_interval(secs => d) FROM unnest($6::float8[]) AS d",
        )
        .bind(provider.as_str())
        .bind(&event_id)
        .bind(kind.event_type(provider))
        .bind(intent)
        .bind(&body)
        .bind(&delays)
        .execute(db)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_select_their_behaviour() {
        assert_eq!(Behaviour::of_card(CARD_APPROVE), Behaviour::Approve);
        assert_eq!(Behaviour::of_card(CARD_DECLINE), Behaviour::Decline);
        assert_eq!(
            Behaviour::of_card(CARD_FAIL_CAPTURE),
            Behaviour::FailCapture
        );
        assert_eq!(
            Behaviour::of_card(CARD_NEVER_CONFIRM),
            Behaviour::NeverConfirm
        );
        assert_eq!(Behaviour::of_card("5555555555554444"), Behaviour::Approve);
        assert_eq!(Behaviour::of_card("4242424242424241"), Behaviour::Decline);
    }

    fn record(state: &str, captures: i32) -> Record {
        Record {
            state: state.into(),
            amount_cents: 2590,
            currency: "EUR".into(),
            captures,
        }
    }

    #[test]
    fn a_capture_is_confirmed_only_once_the_provider_moved_the_money() {
        let eur = Money::new(2590, "EUR");
        let captured = record("captured", 1);
        assert_eq!(captured.confirms(Kind::Captured, Some(&eur), &eur), Ok(()));
        for state in [
            "processing",
            "authorized",
            "capture_failed",
            "canceled",
            "declined",
        ] {
            assert!(
                matches!(
                    record(state, 0).confirms(Kind::Captured, Some(&eur), &eur),
                    Err(Unconfirmed::State { .. })
                ),
                "{state}"
            );
        }
        // A "captured" state with no capture counted is not money moved.
        assert!(
            record("captured", 0)
                .confirms(Kind::Captured, Some(&eur), &eur)
                .is_err()
        );
    }

    #[test]
    fn each_kind_is_confirmed_by_its_provider_states_only() {
        let eur = Money::new(2590, "EUR");
        let cases = [
            (
                Kind::Authorized,
                &["authorized", "captured", "capture_failed"][..],
            ),
            (Kind::Declined, &["declined"][..]),
            (Kind::CaptureFailed, &["capture_failed"][..]),
            (Kind::Voided, &["canceled"][..]),
        ];
        let states = [
            "processing",
            "authorized",
            "declined",
            "captured",
            "capture_failed",
            "canceled",
        ];
        for (kind, backing) in cases {
            for state in states {
                let confirmed = record(state, 1).confirms(kind, Some(&eur), &eur).is_ok();
                assert_eq!(confirmed, backing.contains(&state), "{kind:?} in {state}");
            }
        }
    }

    #[test]
    fn the_amount_and_currency_must_match_the_record_and_the_payment() {
        let eur = Money::new(2590, "EUR");
        let rec = record("captured", 1);
        let cent = Money::new(1, "EUR");
        assert!(matches!(
            rec.confirms(Kind::Captured, Some(&cent), &eur),
            Err(Unconfirmed::Amount { .. })
        ));
        let usd = Money::new(2590, "usd");
        assert!(matches!(
            rec.confirms(Kind::Captured, Some(&usd), &eur),
            Err(Unconfirmed::Amount { .. })
        ));
        assert_eq!(
            rec.confirms(Kind::Captured, None, &eur),
            Err(Unconfirmed::NoAmount)
        );
        // A session of the provider for another amount isn't this payment's.
        let other = Money::new(100, "EUR");
        assert!(matches!(
            rec.confirms(Kind::Captured, Some(&other), &other),
            Err(Unconfirmed::NotThisPayment { .. })
        ));
        // Lower-case currencies (Stripe's) compare equal.
        assert_eq!(
            rec.confirms(Kind::Captured, Some(&Money::new(2590, "eur")), &eur),
            Ok(())
        );
    }

    #[test]
    fn every_test_card_passes_luhn_and_junk_does_not() {
        for card in [
            CARD_APPROVE,
            CARD_DECLINE,
            CARD_FAIL_CAPTURE,
            CARD_NEVER_CONFIRM,
        ] {
            assert!(luhn_valid(card), "{card}");
        }
        for junk in [
            "",
            "4242",
            "4242 4242 4242 4242",
            "424242424242424x",
            "4242424242424243",
        ] {
            assert!(!luhn_valid(junk), "{junk}");
        }
    }
}
