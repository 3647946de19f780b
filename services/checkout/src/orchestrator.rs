//! Drives sagas forward: runs the HTTP steps (reserve, release) and turns
//! passed deadlines into inputs. Work reaches it two ways — a kick right
//! after a transition into an HTTP step (so a checkout doesn't wait for the
//! next sweep), and the sweeper, which claims every saga whose next look is
//! due. A saga being worked on is leased; after a crash the lease runs out
//! and the sweeper resumes it, which is all crash recovery needs: every
//! step is idempotent (the reservation id is the order id) and every result
//! is applied only to the version it was computed from.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use storefront_kit::sync::lock;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::catalog::{Catalog, Reservation, reservation_id};
use crate::config::SagaConfig;
use crate::saga::{Input, State, Wake};
use crate::store::{Applied, SagaRow, Store};

/// Sagas claimed per sweep.
const SWEEP_BATCH: i64 = 64;
/// Sagas stepped concurrently per sweep.
const SWEEP_CONCURRENCY: usize = 16;
/// Longest wait between retries of an HTTP step.
const MAX_RETRY: Duration = Duration::from_secs(5);

/// The delay before HTTP attempt `attempts + 1`: 100 ms doubling, at most 5 s.
pub fn retry_delay(attempts: i32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.clamp(0, 16) as u32);
    (Duration::from_millis(100) * factor).min(MAX_RETRY)
}

/// Since when checkout has been consuming payments' events without a
/// break: `None` while the consumer is down (RabbitMQ unreachable, or not
/// yet connected after a start). Fed by the startup's watch of the
/// consumer; the authorization clock never runs while nobody listens.
#[derive(Clone, Default)]
pub struct Listening(Arc<Mutex<Option<chrono::DateTime<chrono::Utc>>>>);

impl Listening {
    /// Records whether the consumer is consuming now; the moment it starts
    /// (again) is kept until it stops.
    pub fn set(&self, consuming: bool) {
        let mut since = lock(&self.0);
        match (consuming, *since) {
            (true, None) => *since = Some(chrono::Utc::now()),
            (false, _) => *since = None,
            (true, Some(_)) => {}
        }
    }

    /// Since when it has been consuming, if it is.
    pub fn since(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *lock(&self.0)
    }
}

/// The saga driver.
#[derive(Clone)]
pub struct Orchestrator {
    /// Sagas in Postgres.
    pub store: Store,
    /// The catalog's HTTP API.
    catalog: Catalog,
    /// Deadlines and pace.
    config: SagaConfig,
    /// Whether (and since when) payments' answers can reach us.
    pub listening: Listening,
}

impl Orchestrator {
    /// A driver over `store` and `catalog`.
    pub fn new(store: Store, catalog: Catalog, config: SagaConfig) -> Self {
        Self {
            store,
            catalog,
            config,
            listening: Listening::default(),
        }
    }

    /// Steps the saga now, in the background (after a transition into an
    /// HTTP step).
    pub fn kick(&self, order_id: Uuid) {
        let me = self.clone();
        // In the kicking request's or message's span: the steps continue its trace.
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            if let Err(error) = me.advance(order_id).await {
                tracing::warn!(%order_id, %error, "saga step failed; the sweeper will retry");
            }
        }));
    }

    /// [`Orchestrator::kick`] for a saga just read or written, whose row is
    /// at hand: no need to read it again.
    pub fn kick_saga(&self, saga: SagaRow) {
        let me = self.clone();
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            let order_id = saga.order_id;
            if let Err(error) = me.advance_from(saga).await {
                tracing::warn!(%order_id, %error, "saga step failed; the sweeper will retry");
            }
        }));
    }

    /// Runs the saga's HTTP steps until it waits for an answer or ends.
    pub async fn advance(&self, order_id: Uuid) -> Result<(), sqlx::Error> {
        match self.store.load(order_id).await? {
            Some(saga) => self.advance_from(saga).await,
            None => Ok(()),
        }
    }

    /// [`Orchestrator::advance`] from `saga` as read; the saga is read again
    /// only when a step moved it into another HTTP step.
    async fn advance_from(&self, mut saga: SagaRow) -> Result<(), sqlx::Error> {
        while saga.state().is_http_step() && self.step(&saga).await? {
            match self.store.load(saga.order_id).await? {
                Some(next) => saga = next,
                None => break,
            }
        }
        Ok(())
    }

    /// One step of `saga` as read; `true` if it moved into another HTTP step.
    async fn step(&self, saga: &SagaRow) -> Result<bool, sqlx::Error> {
        let (id, version) = (saga.order_id, saga.version);
        let applied = match saga.state() {
            State::Reserving => match self.catalog.reserve(reservation_id(id), &saga.items).await {
                Ok(Reservation::Reserved { amount_cents }) => {
                    self.store
                        .apply_at(saga, Input::Reserved, Some(amount_cents))
                        .await?
                }
                Ok(Reservation::Refused(detail)) => {
                    tracing::info!(order_id = %id, %detail, "reservation refused");
                    self.store
                        .apply_at(saga, Input::ReservationRefused, None)
                        .await?
                }
                Err(error) if chrono::Utc::now() >= saga.reserve_deadline => {
                    tracing::warn!(order_id = %id, %error, "reservation deadline passed");
                    self.store
                        .apply_at(saga, Input::ReserveTimedOut, None)
                        .await?
                }
                Err(error) => {
                    tracing::info!(order_id = %id, %error, attempts = saga.attempts, "reservation will be retried");
                    self.store
                        .retry_later(id, version, retry_delay(saga.attempts))
                        .await?;
                    return Ok(false);
                }
            },
            State::ReleasingStock => match self.catalog.release(reservation_id(id)).await {
                Ok(()) => {
                    self.store
                        .apply_at(saga, Input::StockReleased, None)
                        .await?
                }
                Err(error) => {
                    tracing::info!(order_id = %id, %error, attempts = saga.attempts, "release will be retried");
                    self.store
                        .retry_later(id, version, retry_delay(saga.attempts))
                        .await?;
                    return Ok(false);
                }
            },
            // What the authorization timeout measures (issue 12, defect c):
            // how long payments has had to answer while checkout could hear
            // it — from the later of (a) when checkout's outbox published
            // the authorize command (the broker confirmed it; not when the
            // saga entered the state) and (b) when checkout's event consumer
            // last started consuming (a restart, a reconnect). A paused
            // broker or a checkout that was down must not fail orders that
            // payments never saw or whose answers wait in our queue.
            State::AwaitingAuthorization => {
                let published = self.store.authorize_published_at(id).await?;
                let now = chrono::Utc::now();
                let clock = authorization_clock(
                    published,
                    self.listening.since(),
                    now,
                    self.config.timeouts.authorization,
                );
                match clock {
                    Some(wait) => {
                        self.store.retry_later(id, version, wait).await?;
                        return Ok(false);
                    }
                    None => {
                        self.store
                            .apply_at(saga, Input::DeadlinePassed, None)
                            .await?
                    }
                }
            }
            // Claimed by the sweeper because its deadline passed.
            State::AwaitingCapture | State::VoidingPayment => {
                self.store
                    .apply_at(saga, Input::DeadlinePassed, None)
                    .await?
            }
            State::Completed | State::Failed | State::Rejected => Applied::Ignored,
        };
        Ok(matches!(applied, Applied::Moved(t) if t.wake == Wake::Now))
    }

    /// Every `sweep_interval`, claims due sagas and steps them, until `stop`.
    pub async fn sweep(self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.config.sweep_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            // A pass races the stop signal (issue 12, defect g): with
            // Postgres down every step waits out the pool's acquire timeout,
            // and a pass used to overrun the 15 s stop deadline. Dropping a
            // pass mid-step is a crash in miniature, which the saga already
            // survives: open transactions roll back and the step is retried.
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.sweep_once() => {}
            }
        }
        tracing::info!("saga sweeper stopped");
    }

    /// Claims the sagas that are due and steps them.
    async fn sweep_once(&self) {
        let due = match self.store.claim_due(SWEEP_BATCH).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "sweep failed");
                return;
            }
        };
        futures::stream::iter(due)
            .for_each_concurrent(SWEEP_CONCURRENCY, |saga| async move {
                let stepped = match self.step(&saga).await {
                    Ok(true) => self.advance(saga.order_id).await,
                    Ok(false) => Ok(()),
                    Err(error) => Err(error),
                };
                if let Err(error) = stepped {
                    tracing::warn!(order_id = %saga.order_id, %error, "swept saga step failed");
                }
            })
            .await;
    }
}

/// How long to wait before judging an authorization again, or `None` when
/// its timeout has run out. The clock starts at the later of when the
/// authorize command was published (`Some(Some(at))`) and when the event
/// consumer started listening (`listening`). While the command still waits
/// in the outbox (`Some(None)`) or nobody listens (`listening` is `None`)
/// it doesn't run, so look again shortly; with no outbox row left (cleaned
/// up long after publishing) the saga's own deadline, which brought it
/// here, stands.
fn authorization_clock(
    published: Option<Option<chrono::DateTime<chrono::Utc>>>,
    listening: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
    timeout: Duration,
) -> Option<Duration> {
    let Some(listening) = listening else {
        return Some(UNPUBLISHED_RECHECK);
    };
    match published {
        None => None,
        Some(None) => Some(UNPUBLISHED_RECHECK),
        Some(Some(at)) => {
            let deadline = at.max(listening) + chrono::Duration::from_std(timeout).ok()?;
            (deadline - now)
                .to_std()
                .ok()
                .filter(|left| !left.is_zero())
        }
    }
}

/// How often a saga whose authorize command is still in the outbox is
/// looked at again.
const UNPUBLISHED_RECHECK: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authorization_clock_starts_when_the_command_is_published() {
        let now = chrono::Utc::now();
        let six = Duration::from_secs(6);
        let long_ago = Some(now - chrono::Duration::seconds(60));
        // Still in the outbox (broker paused): not timed out, look again soon.
        assert_eq!(
            authorization_clock(Some(None), long_ago, now, six),
            Some(UNPUBLISHED_RECHECK)
        );
        // Published 2 s ago: 4 s left.
        let two_ago = now - chrono::Duration::seconds(2);
        assert_eq!(
            authorization_clock(Some(Some(two_ago)), long_ago, now, six),
            Some(Duration::from_secs(4))
        );
        // Published 6 s ago or more: timed out.
        let six_ago = now - chrono::Duration::seconds(6);
        assert_eq!(
            authorization_clock(Some(Some(six_ago)), long_ago, now, six),
            None
        );
        // No row left: the saga's deadline stands.
        assert_eq!(authorization_clock(None, long_ago, now, six), None);
    }

    #[test]
    fn the_authorization_clock_waits_while_checkout_cannot_hear_the_answer() {
        let now = chrono::Utc::now();
        let six = Duration::from_secs(6);
        let ten_ago = Some(Some(now - chrono::Duration::seconds(10)));
        // Published 10 s ago, but the consumer is down: not judged.
        assert_eq!(
            authorization_clock(ten_ago, None, now, six),
            Some(UNPUBLISHED_RECHECK)
        );
        // Listening again for 1 s (a restart): 5 s left, not timed out,
        // though the answer may have waited in the queue all along.
        let one_ago = Some(now - chrono::Duration::seconds(1));
        assert_eq!(
            authorization_clock(ten_ago, one_ago, now, six),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn listening_keeps_the_moment_consuming_started_until_it_stops() {
        let listening = Listening::default();
        assert_eq!(listening.since(), None);
        listening.set(true);
        let since = listening.since().expect("listening");
        listening.set(true);
        assert_eq!(listening.since(), Some(since));
        listening.set(false);
        assert_eq!(listening.since(), None);
    }

    #[tokio::test]
    async fn the_sweeper_stops_promptly_while_postgres_hangs() {
        // A listener that never accepts: connecting "succeeds" into the
        // backlog and the server never speaks, so every pool acquire waits
        // its full timeout, as with a paused or dead-but-reachable Postgres.
        let black_hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "postgres://u:p@127.0.0.1:{}/db",
            black_hole.local_addr().unwrap().port()
        );
        let pool = storefront_kit::db::connect_pg(&url.into(), 2).unwrap();
        let timeouts = crate::saga::Timeouts {
            authorization: Duration::from_secs(6),
            resend_after: Duration::from_secs(5),
        };
        let config = SagaConfig {
            timeouts,
            reserve_timeout: Duration::from_secs(10),
            sweep_interval: Duration::from_millis(10),
            lease: Duration::from_secs(5),
        };
        let store = Store::new(pool, timeouts, config.lease, "commands".into());
        let catalog = Catalog::new(vec!["http://127.0.0.1:1".into()], Duration::from_secs(1));
        let stop = CancellationToken::new();
        let sweeper = tokio::spawn(Orchestrator::new(store, catalog, config).sweep(stop.clone()));
        // Let the first pass start and block on the pool.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let asked = std::time::Instant::now();
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), sweeper)
            .await
            .expect("the sweeper overran its stop")
            .unwrap();
        assert!(asked.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn http_steps_back_off_from_100ms_to_5s() {
        let delays: Vec<u128> = (0..8).map(|n| retry_delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(retry_delay(i32::MAX), MAX_RETRY);
        assert_eq!(retry_delay(-1), Duration::from_millis(100));
    }
}
