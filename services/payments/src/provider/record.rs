//! The provider's record of a session, as its read API returns it, and
//! whether it backs what a webhook claims.

use crate::webhook::{Kind, Money};

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
