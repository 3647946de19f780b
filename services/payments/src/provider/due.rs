//! When the webhook sender should look next. The simulator announces each
//! delivery it schedules on [`CHANNEL`] (`NOTIFY`, delivered when the
//! scheduling transaction commits) with the moment it falls due, and the
//! sender's [`listen`] task notes it, so the sender sleeps until the
//! earliest of those moments instead of finding it by its next poll (issue
//! 15: the poll added half an interval to each of a saga's two webhooks,
//! and an idle pass is a commit). Noted only once committed, a delivery is
//! visible when the sender wakes for it: noted in-process before the
//! commit, under load many were not yet, waited for the poll, and the poll
//! had to stay at 20 ms (50 idle commits a second). Polling stays as the
//! fallback, now slow: for deliveries scheduled before a restart or while
//! the listener reconnects, retries and lapsed leases.
//!
//! [`DueTimes`] is pure: time is a parameter; the sender owns the clock.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use storefront_kit::sync::lock;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The channel deliveries are announced on; the payload is the moment the
/// earliest copy falls due, in milliseconds since the Unix epoch.
pub const CHANNEL: &str = "provider_deliveries";

/// The moments deliveries fall due, as announced.
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

/// The instant of an announcement's payload (`epoch_ms`), read at
/// (`now`, `now_system`): a moment already passed is `now`; `None` for a
/// payload that is not a number.
pub fn instant_of(payload: &str, now: Instant, now_system: SystemTime) -> Option<Instant> {
    let epoch_ms: u64 = payload.trim().parse().ok()?;
    let due = SystemTime::UNIX_EPOCH + Duration::from_millis(epoch_ms);
    Some(match due.duration_since(now_system) {
        Ok(ahead) => now + ahead,
        Err(_) => now,
    })
}

/// Notes every delivery announced on [`CHANNEL`] into `due` until `stop`;
/// on a lost connection it waits a second and listens again (the sender
/// polls meanwhile).
pub async fn listen(pool: PgPool, due: Arc<DueTimes>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            loop {
                let notification = listener.recv().await?;
                match instant_of(notification.payload(), Instant::now(), SystemTime::now()) {
                    Some(at) => due.note(at),
                    None => tracing::debug!(
                        payload = notification.payload(),
                        "unreadable delivery announcement"
                    ),
                }
            }
        };
        let result: Result<(), sqlx::Error> = tokio::select! {
            () = stop.cancelled() => return,
            r = listening => r,
        };
        if let Err(error) = result {
            tracing::debug!(%error, "delivery listener lost; polling until it is back");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
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
        assert_eq!(due.pause(now, now + ms(100)), ms(5));
        // After that pass, the next one.
        let later = now + ms(5);
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

    #[test]
    fn an_announced_moment_becomes_an_instant_and_a_passed_one_now() {
        let (now, system) = (Instant::now(), SystemTime::now());
        let epoch_ms = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                .to_string()
        };
        let ahead = instant_of(&epoch_ms(system + ms(120)), now, system).unwrap();
        assert!(
            ahead >= now + ms(119) && ahead <= now + ms(120),
            "{:?}",
            ahead - now
        );
        assert_eq!(
            instant_of(&epoch_ms(system - ms(50)), now, system),
            Some(now)
        );
        assert_eq!(instant_of("soon", now, system), None);
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
