//! When the webhook sender should look next. The simulator knows when each
//! delivery it schedules falls due, so the sender sleeps until the earliest
//! of those moments instead of finding it by its next poll (issue 15: the
//! poll added half an interval to each of a saga's two webhooks, and an
//! idle pass is a commit). Polling stays as the fallback: for deliveries
//! scheduled before a restart, retries and lapsed leases.
//!
//! Pure: time is a parameter; the sender owns the clock.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use storefront_kit::sync::lock;
use tokio::sync::Notify;

/// Added to a delivery's due moment, which is noted before its transaction
/// commits: a pass that came exactly on time could find the row not yet
/// visible (and the next poll would then send it late).
pub const COMMIT_SLACK: Duration = Duration::from_millis(3);

/// The moments deliveries fall due, as noted by the simulator.
#[derive(Debug, Default)]
pub struct DueTimes {
    /// Earliest first; moments already passed are dropped by [`DueTimes::pause`].
    at: Mutex<BTreeSet<Instant>>,
    /// Wakes a sender sleeping past a moment just noted.
    noted: Notify,
}

impl DueTimes {
    /// Notes that a delivery falls due at `at`.
    pub fn note(&self, at: Instant) {
        let at = at + COMMIT_SLACK;
        let earlier = {
            let mut set = lock(&self.at);
            let earlier = set.first().is_none_or(|first| at < *first);
            set.insert(at);
            earlier
        };
        if earlier {
            self.noted.notify_one();
        }
    }

    /// How long to sleep at `now` before the next pass, which is due at
    /// `poll_at` at the latest: until the earliest noted moment after `now`
    /// if that comes first. Moments up to `now` are forgotten (the pass
    /// about to run, or just run, covers them).
    pub fn pause(&self, now: Instant, poll_at: Instant) -> Duration {
        let mut set = lock(&self.at);
        while set.first().is_some_and(|first| *first <= now) {
            set.pop_first();
        }
        let next = set.first().map_or(poll_at, |first| (*first).min(poll_at));
        next.saturating_duration_since(now)
    }

    /// Resolves when a moment is noted earlier than every one before it.
    pub async fn noted(&self) {
        self.noted.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn with_nothing_noted_the_sender_sleeps_until_its_poll() {
        let due = DueTimes::default();
        let now = Instant::now();
        assert_eq!(due.pause(now, now + ms(20)), ms(20));
    }

    #[test]
    fn a_delivery_due_before_the_poll_wakes_the_sender_just_after_it() {
        let due = DueTimes::default();
        let now = Instant::now();
        due.note(now + ms(5));
        due.note(now + ms(12));
        assert_eq!(due.pause(now, now + ms(100)), ms(5) + COMMIT_SLACK);
        // After that pass, the next one.
        let later = now + ms(5) + COMMIT_SLACK;
        assert_eq!(due.pause(later, later + ms(100)), ms(7));
    }

    #[test]
    fn a_delivery_due_after_the_poll_does_not_delay_the_poll() {
        let due = DueTimes::default();
        let now = Instant::now();
        due.note(now + ms(500));
        assert_eq!(due.pause(now, now + ms(20)), ms(20));
    }

    #[test]
    fn passed_moments_are_forgotten_and_an_overdue_poll_runs_at_once() {
        let due = DueTimes::default();
        let now = Instant::now();
        due.note(now);
        let later = now + ms(50);
        assert_eq!(due.pause(later, later + ms(20)), ms(20));
        assert_eq!(due.pause(later, now), Duration::ZERO);
    }

    #[tokio::test]
    async fn noting_an_earlier_moment_wakes_a_waiting_sender() {
        let due = DueTimes::default();
        let now = Instant::now();
        due.note(now + ms(50));
        // The permit of that first note is stored: a waiter returns at once.
        tokio::time::timeout(ms(1000), due.noted())
            .await
            .expect("woken");
        due.note(now + ms(80));
        let later = tokio::time::timeout(ms(30), due.noted()).await;
        assert!(later.is_err(), "a later moment need not wake the sender");
    }
}
