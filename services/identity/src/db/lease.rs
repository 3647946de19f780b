//! When to renew a lease and when to give up on it and rotate, as a pure
//! function of what Vault granted and the time: the rotation task asks
//! [`LeaseSchedule::next`], sleeps until then, acts, and reports back.
//!
//! The rule: renew at half of each granted TTL (or a margin before it
//! runs out, if sooner), asking for the lease's original TTL again. Once
//! Vault grants less than asked, the role's `max_ttl` is in sight and the
//! lease cannot outlive it: rotate a margin before it ends, so the successor
//! is in place while the old login still works and its in-flight queries
//! can finish.

use std::time::Duration;

use tokio::time::Instant;

/// The smallest margin before a lease's end at which we rotate: enough to
/// fetch credentials (Vault creates a role), log in, verify and swap, and
/// for the old pool's in-flight queries to finish, on a loaded machine.
pub const MIN_MARGIN: Duration = Duration::from_millis(1500);

/// What the rotation task does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Ask Vault for another `increment` on the current lease.
    Renew {
        /// The extension to ask for (the lease's original TTL).
        increment: Duration,
    },
    /// Replace the credentials.
    Rotate,
}

/// One lease's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSchedule {
    /// TTL of the lease when issued: what each renewal asks for.
    base: Duration,
    /// When the last grant (issue or renewal) happened.
    granted_at: Instant,
    /// What that grant gave.
    granted: Duration,
    /// Vault capped a renewal: the lease ends at `granted_at + granted`, no later.
    capped: bool,
}

impl LeaseSchedule {
    /// A lease issued at `now` with `ttl`.
    pub fn issued(now: Instant, ttl: Duration) -> Self {
        Self {
            base: ttl,
            granted_at: now,
            granted: ttl,
            capped: false,
        }
    }

    /// When the lease ends unless renewed.
    pub fn expires_at(&self) -> Instant {
        self.granted_at + self.granted
    }

    /// How long before the end we rotate: a quarter of the lease's TTL, at
    /// least [`MIN_MARGIN`], at most half the TTL.
    pub fn margin(&self) -> Duration {
        (self.base / 4).max(MIN_MARGIN).min(self.base / 2)
    }

    /// The next action and when it is due: rotate once capped, else renew.
    pub fn next(&self) -> (Action, Instant) {
        let rotate_at = self.next_rotation();
        if self.capped || self.base.is_zero() {
            return (Action::Rotate, rotate_at);
        }
        let renew_at = (self.granted_at + self.granted / 2).min(rotate_at);
        (
            Action::Renew {
                increment: self.base,
            },
            renew_at,
        )
    }

    /// Vault renewed at `now`, granting `granted` of the `asked` increment.
    pub fn renewed(&mut self, now: Instant, asked: Duration, granted: Duration) {
        self.granted_at = now;
        self.granted = granted;
        if granted < asked {
            self.capped = true;
        }
    }

    /// A renewal failed for a reason that may pass (Vault unreachable):
    /// try again after `backoff`, unless rotation is due first.
    pub fn retry_after(&self, now: Instant, backoff: Duration) -> (Action, Instant) {
        let (action, at) = self.next();
        match action {
            Action::Rotate => (action, at),
            Action::Renew { .. } if now + backoff >= self.next_rotation() => {
                (Action::Rotate, self.next_rotation())
            }
            Action::Renew { increment } => (Action::Renew { increment }, now + backoff),
        }
    }

    /// A margin before the end, never before the last grant.
    fn next_rotation(&self) -> Instant {
        self.expires_at()
            .checked_sub(self.margin())
            .unwrap_or(self.granted_at)
            .max(self.granted_at)
    }

    /// Seconds left on the lease at `now` (the TTL gauge).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.expires_at().saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    #[test]
    fn renews_at_half_life_asking_for_the_original_ttl() {
        let t0 = Instant::now();
        let lease = LeaseSchedule::issued(t0, s(60.0));
        assert_eq!(
            lease.next(),
            (Action::Renew { increment: s(60.0) }, t0 + s(30.0))
        );
    }

    #[test]
    fn a_capped_renewal_means_rotate_a_margin_before_the_end() {
        // default_ttl 3 s, max_ttl 5 s, as `storefront rotate --ttl 5` sets.
        let t0 = Instant::now();
        let mut lease = LeaseSchedule::issued(t0, s(3.0));
        let (_, at) = lease.next();
        assert_eq!(at, t0 + s(1.5));
        lease.renewed(at, s(3.0), s(3.0));
        let (action, at) = lease.next();
        assert_eq!(action, Action::Renew { increment: s(3.0) });
        assert_eq!(at, t0 + s(3.0));
        lease.renewed(at, s(3.0), s(2.0));
        assert_eq!(lease.next(), (Action::Rotate, t0 + s(5.0) - s(1.5)));
    }

    #[test]
    fn margin_is_a_quarter_of_the_ttl_within_bounds() {
        let t0 = Instant::now();
        assert_eq!(LeaseSchedule::issued(t0, s(3600.0)).margin(), s(900.0));
        assert_eq!(LeaseSchedule::issued(t0, s(4.0)).margin(), s(1.5));
        assert_eq!(LeaseSchedule::issued(t0, s(2.0)).margin(), s(1.0));
    }

    #[test]
    fn a_short_lease_renews_no_later_than_its_margin() {
        // 2 s lease: margin 1 s, so the renewal is due at 1 s (= half-life).
        let t0 = Instant::now();
        let lease = LeaseSchedule::issued(t0, s(2.0));
        assert_eq!(
            lease.next(),
            (Action::Renew { increment: s(2.0) }, t0 + s(1.0))
        );
    }

    #[test]
    fn a_failed_renewal_retries_soon_but_never_past_the_rotation_point() {
        let t0 = Instant::now();
        // 8 s lease: margin 2 s, rotation point at 6 s.
        let lease = LeaseSchedule::issued(t0, s(8.0));
        let now = t0 + s(4.0);
        assert_eq!(
            lease.retry_after(now, s(1.0)),
            (Action::Renew { increment: s(8.0) }, t0 + s(5.0))
        );
        let late = t0 + s(5.5);
        assert_eq!(
            lease.retry_after(late, s(1.0)),
            (Action::Rotate, t0 + s(6.0))
        );
    }

    #[test]
    fn remaining_counts_down_to_zero() {
        let t0 = Instant::now();
        let lease = LeaseSchedule::issued(t0, s(10.0));
        assert_eq!(lease.remaining(t0 + s(4.0)), s(6.0));
        assert_eq!(lease.remaining(t0 + s(11.0)), Duration::ZERO);
    }
}
