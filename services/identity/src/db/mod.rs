//! The service's Postgres access when credentials expire.
//!
//! [`Db`] holds the current pool in an [`ArcSwap`]: a request loads it once
//! (lock-free) and uses it; the rotation task ([`rotator`]) builds a pool on
//! new Vault credentials, swaps it in, lets the old one drain and revokes
//! the old lease. A request that still meets the old login — its pool just
//! closed, or an operator revoked the lease and Postgres terminated the
//! session — is retried once, on a pool newer than the one that failed
//! ([`Db::run`]), so no request fails because of a rotation.

pub mod lease;
pub mod rotator;
pub mod vault;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};

/// How long a request whose connection died waits for fresh credentials
/// before its retry goes ahead anyway (and most likely fails with a 503).
pub const FRESH_WAIT: Duration = Duration::from_secs(10);
/// Closed pools a request may meet in a row (rotations back to back)
/// before its error is returned.
const MAX_CLOSED_RETRIES: u32 = 3;
/// Generations kept in the history `/lab/lease` shows.
const HISTORY: usize = 500;

/// Counter of credential rotations, labelled by `reason`.
pub const ROTATIONS_METRIC: &str = "identity_db_credential_rotations_total";
/// Counter of requests retried on fresh credentials.
pub const RETRIES_METRIC: &str = "identity_db_retries_total";
/// Gauge: seconds left on the current lease.
pub const LEASE_TTL_METRIC: &str = "identity_db_lease_ttl_seconds";

pub use crate::contract::{Reason, Record};

/// One set of credentials and the pool built on them.
pub struct Generation {
    /// Counts up from 1; a retry waits for a number above the failed one.
    pub number: u64,
    /// The pool logging in with this generation's credentials.
    pub pool: PgPool,
    /// The Postgres login.
    pub username: String,
    /// The Vault lease, `None` with a static `DATABASE_URL`.
    pub lease_id: Option<String>,
}

/// A request to replace the generation `generation` (ignored if it is
/// already replaced: many requests failing at once cause one rotation).
#[derive(Debug, Clone, Copy)]
pub struct Trigger {
    /// The generation that failed.
    pub generation: u64,
    /// What failed.
    pub reason: Reason,
}

struct Shared {
    /// The pool requests use now.
    current: ArcSwap<Generation>,
    /// The current generation's number, for retries to wait on.
    published: watch::Sender<u64>,
    /// The rotation task's inbox; `None` with static credentials.
    triggers: Option<mpsc::Sender<Trigger>>,
    /// Newest last.
    history: Mutex<VecDeque<Record>>,
    /// Lab control arm: no retry, and old leases are revoked before they
    /// drain — what rotation looks like done naively.
    naive: AtomicBool,
}

/// Cheap to clone; every handler holds one.
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
}

impl Db {
    /// A fixed pool (static `DATABASE_URL`): no rotation, retries on the same pool.
    pub fn fixed(pool: PgPool, username: String) -> Self {
        Self::new(
            Generation {
                number: 1,
                pool,
                username,
                lease_id: None,
            },
            None,
            None,
        )
    }

    fn new(
        first: Generation,
        triggers: Option<mpsc::Sender<Trigger>>,
        record: Option<Record>,
    ) -> Self {
        let (published, _) = watch::channel(first.number);
        Self {
            shared: Arc::new(Shared {
                current: ArcSwap::from_pointee(first),
                published,
                triggers,
                history: Mutex::new(record.into_iter().collect()),
                naive: AtomicBool::new(false),
            }),
        }
    }

    /// The generation requests use now.
    pub fn current(&self) -> Arc<Generation> {
        self.shared.current.load_full()
    }

    /// Runs `op` on the current pool; if it fails because the connection or
    /// login went stale, runs it once more on a newer generation. `op` must
    /// be safe to repeat after a failure (a rolled-back transaction, or
    /// idempotent by construction: see `refresh`). A closed pool only ever
    /// means a newer one is current (pools close after the swap), so that
    /// is retried on the newest pool without using up the one stale retry.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T, sqlx::Error>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut generation = self.current();
        let (mut closed, mut stale) = (0, 0);
        loop {
            let error = match op(generation.pool.clone()).await {
                Err(error) if !self.is_naive() => error,
                result => return result,
            };
            match error {
                sqlx::Error::PoolClosed if closed < MAX_CLOSED_RETRIES => closed += 1,
                ref e if is_stale(e) && stale == 0 => {
                    stale += 1;
                    tracing::warn!(generation = generation.number, user = %generation.username, error = %e, "database login went stale; retrying on fresh credentials");
                }
                error => return Err(error),
            }
            metrics::counter!(RETRIES_METRIC).increment(1);
            generation = self.fresher_than(generation.number).await;
        }
    }

    /// The current generation if it is newer than `number`; otherwise asks
    /// for a rotation and waits (at most [`FRESH_WAIT`]) for one.
    async fn fresher_than(&self, number: u64) -> Arc<Generation> {
        let Some(triggers) = &self.shared.triggers else {
            return self.current();
        };
        let current = self.current();
        if current.number > number {
            return current;
        }
        let _ = triggers.try_send(Trigger {
            generation: number,
            reason: Reason::ConnectionFailed,
        });
        let mut published = self.shared.published.subscribe();
        let _ = tokio::time::timeout(FRESH_WAIT, published.wait_for(|n| *n > number)).await;
        self.current()
    }

    /// Asks the rotation task to replace the current generation; false
    /// with static credentials.
    pub fn request_rotation(&self) -> bool {
        let Some(triggers) = &self.shared.triggers else {
            return false;
        };
        triggers
            .try_send(Trigger {
                generation: self.current().number,
                reason: Reason::Requested,
            })
            .is_ok()
    }

    /// Waits until a generation newer than `number` is current, or `limit` passes.
    pub async fn wait_newer_than(&self, number: u64, limit: Duration) -> Arc<Generation> {
        let mut published = self.shared.published.subscribe();
        let _ = tokio::time::timeout(limit, published.wait_for(|n| *n > number)).await;
        self.current()
    }

    /// Every generation still in the history, oldest first.
    pub fn history(&self) -> Vec<Record> {
        self.shared
            .history
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect()
    }

    /// Switches the lab control arm on or off.
    pub fn set_naive(&self, on: bool) {
        self.shared.naive.store(on, Ordering::Relaxed);
    }

    /// Whether the lab control arm (no rotation) is on.
    pub fn is_naive(&self) -> bool {
        self.shared.naive.load(Ordering::Relaxed)
    }

    /// Makes `next` current and returns the generation it replaced.
    fn swap(&self, next: Generation, record: Record) -> Arc<Generation> {
        let number = next.number;
        let old = self.shared.current.swap(Arc::new(next));
        self.shared.published.send_replace(number);
        self.update(old.number, |r| {
            r.swapped_out_at_ms = Some(record.swapped_in_at_ms)
        });
        let mut history = self.shared.history.lock().expect("not poisoned");
        history.push_back(record);
        while history.len() > HISTORY {
            history.pop_front();
        }
        old
    }

    /// Edits the history record of generation `number`, if still kept.
    fn update(&self, number: u64, f: impl FnOnce(&mut Record)) {
        let mut history = self.shared.history.lock().expect("not poisoned");
        if let Some(r) = history.iter_mut().rev().find(|r| r.generation == number) {
            f(r);
        }
    }
}

/// Errors that mean "this login or session is gone", after which the same
/// work on fresh credentials should succeed: the pool was closed by a swap,
/// the session was terminated (57P01 when Vault revokes the lease), the
/// socket died, or the login was refused because the role was dropped.
pub fn is_stale(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // admin_shutdown, crash_shutdown, cannot_connect_now,
            // invalid_authorization_specification, invalid_password,
            // connection_exception, connection_does_not_exist, connection_failure
            Some("57P01" | "57P02" | "57P03" | "28000" | "28P01" | "08000" | "08003" | "08006")
        ),
        _ => false,
    }
}

/// Milliseconds since the Unix epoch (history timestamps the CLI compares
/// with its own clock).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_pools_and_dead_sockets_are_stale_but_query_errors_are_not() {
        assert!(is_stale(&sqlx::Error::PoolClosed));
        assert!(is_stale(&sqlx::Error::Io(std::io::Error::other("reset"))));
        assert!(!is_stale(&sqlx::Error::RowNotFound));
        assert!(!is_stale(&sqlx::Error::PoolTimedOut));
    }

    fn lazy_pool() -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://u:p@127.0.0.1:1/db")
            .unwrap()
    }

    fn record(generation: u64) -> Record {
        Record {
            generation,
            username: format!("u{generation}"),
            lease_id: None,
            reason: Reason::Startup,
            lease_ttl_secs: None,
            requested_at_ms: 0,
            swapped_in_at_ms: generation * 10,
            swapped_out_at_ms: None,
            drained_at_ms: None,
            revoked_at_ms: None,
            renewals: 0,
        }
    }

    fn generation(number: u64) -> Generation {
        Generation {
            number,
            pool: lazy_pool(),
            username: format!("u{number}"),
            lease_id: None,
        }
    }

    #[tokio::test]
    async fn a_swap_publishes_the_new_generation_and_closes_the_old_record() {
        let (tx, _rx) = mpsc::channel(4);
        let db = Db::new(generation(1), Some(tx), Some(record(1)));
        let waiter = {
            let db = db.clone();
            tokio::spawn(async move { db.wait_newer_than(1, Duration::from_secs(5)).await.number })
        };
        let old = db.swap(generation(2), record(2));
        assert_eq!(old.number, 1);
        assert_eq!(waiter.await.unwrap(), 2);
        let history = db.history();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].swapped_out_at_ms, Some(20));
    }

    #[tokio::test]
    async fn a_stale_failure_is_retried_once_on_a_newer_generation() {
        let (tx, mut rx) = mpsc::channel(4);
        let db = Db::new(generation(1), Some(tx), Some(record(1)));
        // The "rotation task": on the trigger, swap in generation 2.
        let rotator = {
            let db = db.clone();
            tokio::spawn(async move {
                let trigger = rx.recv().await.unwrap();
                assert_eq!(trigger.generation, 1);
                assert_eq!(trigger.reason, Reason::ConnectionFailed);
                db.swap(generation(2), record(2));
            })
        };
        let calls = std::sync::atomic::AtomicU32::new(0);
        let result = db
            .run(|_pool| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                let number = db.current().number;
                async move {
                    match n {
                        0 => Err(sqlx::Error::PoolClosed),
                        _ => Ok(number),
                    }
                }
            })
            .await;
        assert_eq!(result.unwrap(), 2, "the retry ran on generation 2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        rotator.await.unwrap();
    }

    #[tokio::test]
    async fn the_naive_arm_does_not_retry() {
        let db = Db::fixed(lazy_pool(), "u".into());
        db.set_naive(true);
        let calls = std::sync::atomic::AtomicU32::new(0);
        let result: Result<(), _> = db
            .run(|_pool| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(sqlx::Error::PoolClosed) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
