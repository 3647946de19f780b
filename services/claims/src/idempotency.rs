//! The idempotency contract's vocabulary: the `Idempotency-Key` request
//! header, the `Idempotent-Replayed` response header, and the one decision
//! — created, replayed or key reused — as a pure function of what the
//! database returned.

pub use storefront_kit::headers::{IDEMPOTENT_REPLAYED, IdempotencyKey, KeyError};

/// What the database said about a key: the stored row and whether this
/// request's statement was the one that inserted it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Recorded {
    /// The claim the key is bound to.
    pub claim_id: uuid::Uuid,
    /// Fingerprint of the body the key was first used with.
    pub request_hash: String,
    /// The status first sent.
    pub response_status: i16,
    /// The body first sent, verbatim.
    pub response_body: String,
    /// True only for the request whose INSERT created the row.
    pub inserted: bool,
}

/// How a request with a key is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// This request created the record: send the freshly rendered response.
    Created,
    /// The same request was seen before: send the stored response again.
    Replayed,
    /// The key is bound to a different request: refuse, change nothing.
    KeyReused,
}

impl Outcome {
    /// Decides from the stored record and this request's fingerprint.
    pub fn of(recorded: &Recorded, request_hash: &str) -> Self {
        if recorded.inserted {
            Self::Created
        } else if recorded.request_hash == request_hash {
            Self::Replayed
        } else {
            Self::KeyReused
        }
    }

    /// A label for logs and the outcome counter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Replayed => "replayed",
            Self::KeyReused => "key_reused",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(inserted: bool, hash: &str) -> Recorded {
        Recorded {
            claim_id: uuid::Uuid::nil(),
            request_hash: hash.into(),
            response_status: 201,
            response_body: "{}".into(),
            inserted,
        }
    }

    #[test]
    fn outcome_follows_inserted_then_hash() {
        assert_eq!(Outcome::of(&recorded(true, "h"), "h"), Outcome::Created);
        assert_eq!(Outcome::of(&recorded(false, "h"), "h"), Outcome::Replayed);
        assert_eq!(
            Outcome::of(&recorded(false, "h"), "other"),
            Outcome::KeyReused
        );
    }
}
