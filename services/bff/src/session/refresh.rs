//! Refresh before expiry, once per session, never tripping identity's
//! reuse detection.
//!
//! A request whose session's access token has less than the margin left
//! takes the session's lock (`SET NX PX`). The winner reads the session
//! again (someone may have refreshed it between the first read and the
//! lock), presents the refresh token once, stores the new pair and
//! releases the lock. Everyone else polls the store, bounded, until the
//! access token changes, and uses the new one. Presenting a spent refresh
//! token twice would make identity revoke the whole family (it takes that
//! for a stolen token), so no request ever refreshes without the lock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Session, Sessions, new_secret};

/// Counter of refreshes, labelled `outcome`.
pub const REFRESH_METRIC: &str = "bff_session_refreshes_total";
/// How often a waiting request looks for the new token.
const POLL: Duration = Duration::from_millis(10);

/// Why a session cannot be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// It ended (signed out, expired, or identity refused its refresh
    /// token): the browser must sign in again.
    #[error("the session has ended; sign in again")]
    Gone,
    /// Its token expired and could not be refreshed now (identity or the
    /// store unreachable, or another refresh still running): try again.
    #[error("the session cannot be refreshed right now")]
    Unavailable,
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a token expiring at `exp` needs refreshing at `now`.
pub fn due(exp: u64, now: u64, margin: Duration) -> bool {
    exp < now.saturating_add(margin.as_secs())
}

impl Sessions {
    /// The session with an access token good for at least the margin, if
    /// that can be had; refreshing it (once, under the lock) if needed.
    pub async fn fresh(&self, hash: &str, seen: Session) -> Result<Session, Unusable> {
        let margin = self.config.refresh_margin;
        if !due(seen.access_exp, now_secs(), margin) {
            return Ok(seen);
        }
        let deadline = tokio::time::Instant::now() + self.config.refresh_wait;
        let owner = new_secret();
        loop {
            match self
                .store
                .try_lock(hash, &owner, self.config.lock_ttl)
                .await
            {
                Ok(true) => {
                    let result = self.refresh_locked(hash, &seen).await;
                    if let Err(e) = self.store.unlock(hash, &owner).await {
                        tracing::warn!(error = %e, "could not release a refresh lock; it expires on its own");
                    }
                    return result.or_else(|e| still_valid(&seen, e));
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "refresh lock unavailable");
                    return still_valid(&seen, Unusable::Unavailable);
                }
            }
            // Someone else is refreshing: wait for their token.
            tokio::time::sleep(POLL).await;
            match self.store.load(hash).await {
                Ok(Some(now)) if now.access_jti != seen.access_jti => return Ok(now),
                Ok(Some(_)) => {}
                Ok(None) => return Err(Unusable::Gone),
                Err(e) => tracing::warn!(error = %e, "session store unavailable while waiting"),
            }
            if tokio::time::Instant::now() >= deadline {
                metrics::counter!(REFRESH_METRIC, "outcome" => "wait_timed_out").increment(1);
                return still_valid(&seen, Unusable::Unavailable);
            }
        }
    }

    /// Holding the lock: refresh unless it has been done already.
    async fn refresh_locked(&self, hash: &str, seen: &Session) -> Result<Session, Unusable> {
        let current = match self.store.load(hash).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(Unusable::Gone),
            Err(e) => {
                tracing::warn!(error = %e, "session store unavailable before a refresh");
                return Err(Unusable::Unavailable);
            }
        };
        if current.access_jti != seen.access_jti
            || !due(current.access_exp, now_secs(), self.config.refresh_margin)
        {
            return Ok(current);
        }
        let grant = match self.identity.refresh(&current.refresh_token).await {
            Ok(g) => g,
            Err(f) if f.invalid_grant() => {
                metrics::counter!(REFRESH_METRIC, "outcome" => "refused").increment(1);
                tracing::info!(user = %current.user, "identity refused the session's refresh token; session ended");
                if let Err(e) = self.store.delete(hash).await {
                    tracing::warn!(error = %e, "could not delete an ended session");
                }
                return Err(Unusable::Gone);
            }
            Err(f) => {
                metrics::counter!(REFRESH_METRIC, "outcome" => "unavailable").increment(1);
                tracing::warn!(failure = ?f, "refresh failed");
                return Err(Unusable::Unavailable);
            }
        };
        let who = self
            .verifier
            .verify(&grant.access_token)
            .await
            .map_err(|r| {
                tracing::warn!(rejected = %r, "identity's refreshed access token does not verify");
                Unusable::Unavailable
            })?;
        let next = Session::new(
            &who,
            grant.access_token,
            grant.refresh_token,
            current.csrf_token,
        );
        // The spent refresh token is gone at identity: if this write fails
        // the session cannot be refreshed again, so it ends.
        if let Err(e) = self.store.save(hash, &next, grant.refresh_expires_in).await {
            tracing::warn!(error = %e, "could not store a refreshed session");
            return Err(Unusable::Gone);
        }
        metrics::counter!(REFRESH_METRIC, "outcome" => "refreshed").increment(1);
        Ok(next)
    }
}

/// `seen` if its access token has not expired yet (a failed early refresh
/// costs nothing), else `why`.
fn still_valid(seen: &Session, why: Unusable) -> Result<Session, Unusable> {
    if why == Unusable::Unavailable && seen.access_exp > now_secs() {
        Ok(seen.clone())
    } else {
        Err(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_due_inside_the_margin_only() {
        let m = Duration::from_secs(60);
        assert!(!due(1_000 + 61, 1_000, m));
        assert!(due(1_000 + 59, 1_000, m));
        assert!(due(900, 1_000, m));
        assert!(!due(1_000, 1_000, Duration::ZERO));
    }
}
