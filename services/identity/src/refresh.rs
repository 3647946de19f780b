//! Refresh-token rotation with reuse detection, as a pure decision over the
//! row the presented token maps to, so every rule is unit-tested without a
//! database.
//!
//! Each refresh token is single-use: using it marks it used and issues its
//! successor in the same family. A used token presented again means two
//! parties hold the family (a thief replayed it, or the owner did after a
//! thief): the whole family is revoked, so neither can refresh any more.
//!
//! One exception keeps server-side retries safe: the attempt that used the
//! token records its request id, and the same request presenting it again
//! (a retry after the connection died around COMMIT) is the *same* use, not
//! a reuse — it gets the successor it already created.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The stored state of a presented refresh token and its family.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRow {
    /// The family (login session) the token belongs to.
    pub family_id: Uuid,
    /// The user the family belongs to.
    pub user_id: Uuid,
    /// The user's login name (goes into the new access token).
    pub username: String,
    /// The user's roles now (go into the new access token: a role granted
    /// or withdrawn shows at the next refresh).
    pub roles: Vec<String>,
    /// When the token stops being accepted.
    pub expires_at: DateTime<Utc>,
    /// When it was exchanged, if it was.
    pub used_at: Option<DateTime<Utc>>,
    /// The request that exchanged it.
    pub used_by_request: Option<Uuid>,
    /// When the family was revoked, if it was.
    pub family_revoked_at: Option<DateTime<Utc>>,
}

/// What to do with a presented refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Valid and unused: mark it used, issue the successor.
    Rotate,
    /// This very request already rotated it (retry after an ambiguous
    /// commit): answer with the successor it created.
    Replay,
    /// Used before by someone else: revoke the family, refuse.
    ReuseDetected,
    /// Refuse without side effects.
    Refuse(Refusal),
}

/// Why a refresh token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No such token (never issued, or garbage).
    Unknown,
    /// Its family was revoked (logout or earlier reuse).
    FamilyRevoked,
    /// Past its lifetime.
    Expired,
}

impl Refusal {
    /// The `reason` member of the problem response.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown_token",
            Self::FamilyRevoked => "family_revoked",
            Self::Expired => "expired",
        }
    }
}

/// The rules, in order: unknown, revoked family, reuse (or own retry),
/// expiry, else rotate. Reuse is checked before expiry so that replaying an
/// old, expired token still burns the family it belonged to.
pub fn decide(row: Option<&TokenRow>, request: Uuid, now: DateTime<Utc>) -> Decision {
    let Some(row) = row else {
        return Decision::Refuse(Refusal::Unknown);
    };
    if row.family_revoked_at.is_some() {
        return Decision::Refuse(Refusal::FamilyRevoked);
    }
    if row.used_at.is_some() {
        return if row.used_by_request == Some(request) {
            Decision::Replay
        } else {
            Decision::ReuseDetected
        };
    }
    if row.expires_at <= now {
        return Decision::Refuse(Refusal::Expired);
    }
    Decision::Rotate
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn fresh(now: DateTime<Utc>) -> TokenRow {
        TokenRow {
            family_id: Uuid::new_v4(),
            user_id: Uuid::new_v4(),
            username: "alice".into(),
            roles: vec!["customer".into()],
            expires_at: now + Duration::hours(1),
            used_at: None,
            used_by_request: None,
            family_revoked_at: None,
        }
    }

    #[test]
    fn an_unused_live_token_rotates() {
        let now = Utc::now();
        assert_eq!(
            decide(Some(&fresh(now)), Uuid::new_v4(), now),
            Decision::Rotate
        );
    }

    #[test]
    fn an_unknown_token_is_refused() {
        assert_eq!(
            decide(None, Uuid::new_v4(), Utc::now()),
            Decision::Refuse(Refusal::Unknown)
        );
    }

    #[test]
    fn a_used_token_presented_by_another_request_is_reuse() {
        let now = Utc::now();
        let mut row = fresh(now);
        row.used_at = Some(now);
        row.used_by_request = Some(Uuid::new_v4());
        assert_eq!(
            decide(Some(&row), Uuid::new_v4(), now),
            Decision::ReuseDetected
        );
    }

    #[test]
    fn the_same_request_retrying_is_a_replay_not_reuse() {
        let now = Utc::now();
        let request = Uuid::new_v4();
        let mut row = fresh(now);
        row.used_at = Some(now);
        row.used_by_request = Some(request);
        assert_eq!(decide(Some(&row), request, now), Decision::Replay);
    }

    #[test]
    fn reuse_of_an_expired_token_still_burns_the_family() {
        let now = Utc::now();
        let mut row = fresh(now);
        row.expires_at = now - Duration::seconds(1);
        row.used_at = Some(now - Duration::minutes(5));
        row.used_by_request = Some(Uuid::new_v4());
        assert_eq!(
            decide(Some(&row), Uuid::new_v4(), now),
            Decision::ReuseDetected
        );
    }

    #[test]
    fn expired_and_revoked_tokens_are_refused() {
        let now = Utc::now();
        let mut expired = fresh(now);
        expired.expires_at = now;
        assert_eq!(
            decide(Some(&expired), Uuid::new_v4(), now),
            Decision::Refuse(Refusal::Expired)
        );
        let mut revoked = fresh(now);
        revoked.family_revoked_at = Some(now);
        revoked.used_at = Some(now);
        assert_eq!(
            decide(Some(&revoked), Uuid::new_v4(), now),
            Decision::Refuse(Refusal::FamilyRevoked)
        );
    }
}
