//! The rotation task: renews the current lease on the [`LeaseSchedule`],
//! and when the lease can't be renewed further, Vault refuses a renewal, or
//! a request reports a dead login, it rotates:
//!
//! 1. fetch new credentials (Vault creates a Postgres role),
//! 2. build a pool on them, verify it (`SELECT 1`) and warm it to the old
//!    pool's size, so the first requests after the swap don't pay for logins,
//! 3. swap it in atomically,
//! 4. in the background: close the old pool — which waits for checked-out
//!    connections, i.e. in-flight queries finish — then revoke the old lease,
//!    so Vault drops a role that holds no session.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use storefront_kit::db::{PG_ACQUIRE_TIMEOUT, PG_IDLE_TIMEOUT};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lease::{Action, LeaseSchedule};
use super::vault::{Credentials, VaultClient, VaultError};
use super::{Db, Generation, LEASE_TTL_METRIC, ROTATIONS_METRIC, Reason, Record, Trigger, unix_ms};

/// Pause before trying again when Vault or Postgres failed mid-rotation.
const RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Longest an old pool may take to drain before it is abandoned.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// Connections opened on a new pool before the swap, at most: enough that
/// the first requests don't queue behind logins, few enough that a loaded
/// machine still swaps well within the margin.
const WARM_MAX: u32 = 4;
/// How often the lease TTL gauge is refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// How pools are built: the server's address and the pool's shape; the
/// login comes from each set of credentials.
#[derive(Clone)]
pub struct PoolSpec {
    /// Host, port, database (and TLS mode) from `DATABASE_URL`.
    pub server: PgConnectOptions,
    /// `PG_MAX_CONNECTIONS`.
    pub max_connections: u32,
}

impl PoolSpec {
    /// A lazily connecting pool logging in with `creds`.
    pub fn pool(&self, creds: &Credentials) -> PgPool {
        let options = self
            .server
            .clone()
            .username(&creds.username)
            .password(creds.password.expose_secret());
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(PG_ACQUIRE_TIMEOUT)
            .idle_timeout(PG_IDLE_TIMEOUT)
            .connect_lazy_with(options)
    }
}

/// Why the first credentials could not be had.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot get database credentials from Vault: {0}")]
    /// Vault did not issue credentials.
    Vault(#[from] VaultError),
    #[error("Vault's credentials do not log in to Postgres: {0}")]
    /// Postgres refused the issued credentials.
    Postgres(#[from] sqlx::Error),
}

/// Fetches the first credentials, proves they work, and returns the
/// [`Db`] with the task that keeps them fresh (not yet running).
pub async fn start(vault: VaultClient, spec: PoolSpec) -> Result<(Db, Rotator), StartError> {
    let requested_at_ms = unix_ms();
    let creds = vault.credentials().await?;
    let pool = spec.pool(&creds);
    if let Err(error) = verify(&pool, 1).await {
        pool.close().await;
        let _ = vault.revoke(&creds.lease_id).await;
        return Err(error.into());
    }
    let (triggers, inbox) = mpsc::channel(64);
    let record = record(1, &creds, Reason::Startup, requested_at_ms);
    let db = Db::new(generation(1, pool, &creds), Some(triggers), Some(record));
    tracing::info!(user = %creds.username, ttl_secs = creds.lease_duration.as_secs(), "database credentials from Vault");
    let rotator = Rotator {
        db: db.clone(),
        vault,
        spec,
        inbox,
        schedule: LeaseSchedule::issued(Instant::now(), creds.lease_duration),
        lease_id: creds.lease_id,
        retiring: JoinSet::new(),
    };
    Ok((db, rotator))
}

fn generation(number: u64, pool: PgPool, creds: &Credentials) -> Generation {
    Generation {
        number,
        pool,
        username: creds.username.clone(),
        lease_id: Some(creds.lease_id.clone()),
    }
}

fn record(number: u64, creds: &Credentials, reason: Reason, requested_at_ms: u64) -> Record {
    Record {
        generation: number,
        username: creds.username.clone(),
        lease_id: Some(creds.lease_id.clone()),
        reason,
        lease_ttl_secs: Some(creds.lease_duration.as_secs()),
        requested_at_ms,
        swapped_in_at_ms: unix_ms(),
        swapped_out_at_ms: None,
        drained_at_ms: None,
        revoked_at_ms: None,
        renewals: 0,
    }
}

/// `SELECT 1` on `n` connections at once: the login works, and the pool
/// holds `n` open connections afterwards.
async fn verify(pool: &PgPool, n: u32) -> Result<(), sqlx::Error> {
    let checks = (0..n.max(1)).map(|_| async {
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        // Held until every check has connected, so they are n distinct connections.
        Ok::<_, sqlx::Error>(conn)
    });
    let conns: Vec<_> = join_all(checks)
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    drop(conns);
    Ok(())
}

/// The running task's state.
pub struct Rotator {
    db: Db,
    vault: VaultClient,
    spec: PoolSpec,
    /// Rotation requests from failing requests and `/lab/rotate`.
    inbox: mpsc::Receiver<Trigger>,
    /// The current lease's timeline.
    schedule: LeaseSchedule,
    /// The current lease.
    lease_id: String,
    /// Old generations draining and being revoked.
    retiring: JoinSet<()>,
}

impl Rotator {
    /// Runs until `stop` is cancelled, then waits for retiring pools, closes the
    /// current one and revokes its lease (so `down` leaves no role behind).
    pub async fn run(mut self, stop: CancellationToken) {
        let (mut action, mut due) = self.schedule.next();
        let mut gauge = tokio::time::interval(GAUGE_INTERVAL);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(due) => {
                    (action, due) = match action {
                        Action::Renew { increment } => self.renew(increment).await,
                        Action::Rotate => self.rotate(Reason::MaxTtl).await,
                    };
                }
                Some(trigger) = self.inbox.recv() => {
                    if trigger.generation == self.db.current().number {
                        (action, due) = self.rotate(trigger.reason).await;
                    }
                }
                Some(_) = self.retiring.join_next(), if !self.retiring.is_empty() => {}
                _ = gauge.tick() => {
                    let left = self.schedule.remaining(Instant::now());
                    metrics::gauge!(LEASE_TTL_METRIC).set(left.as_secs_f64());
                }
                () = stop.cancelled() => break,
            }
        }
        while self.retiring.join_next().await.is_some() {}
        let current = self.db.current();
        current.pool.close().await;
        match self.vault.revoke(&self.lease_id).await {
            Ok(()) => tracing::info!(user = %current.username, "lease revoked at shutdown"),
            Err(error) => {
                tracing::warn!(%error, "could not revoke the lease at shutdown; Vault will expire it")
            }
        }
    }

    async fn renew(&mut self, increment: Duration) -> (Action, Instant) {
        let now = Instant::now();
        match self.vault.renew(&self.lease_id, increment).await {
            Ok(granted) => {
                self.schedule.renewed(now, increment, granted);
                let number = self.db.current().number;
                self.db.update(number, |r| r.renewals += 1);
                tracing::debug!(granted_secs = granted.as_secs(), "lease renewed");
                self.schedule.next()
            }
            Err(VaultError::Refused { status, message }) => {
                tracing::warn!(status, %message, "Vault refused to renew the lease; rotating");
                self.rotate(Reason::RenewalRefused).await
            }
            Err(error) => {
                tracing::warn!(%error, "lease renewal failed; will retry");
                self.schedule.retry_after(now, RETRY_BACKOFF)
            }
        }
    }

    /// Steps 1–3 now, step 4 in the background. On failure the current
    /// generation stays and the rotation is retried shortly.
    async fn rotate(&mut self, reason: Reason) -> (Action, Instant) {
        let requested_at_ms = unix_ms();
        let retry = (Action::Rotate, Instant::now() + RETRY_BACKOFF);
        let creds = match self.vault.credentials().await {
            Ok(creds) => creds,
            Err(error) => {
                tracing::error!(%error, reason = reason.as_str(), "cannot get new database credentials");
                return retry;
            }
        };
        let old = self.db.current();
        let pool = self.spec.pool(&creds);
        let warm = old
            .pool
            .size()
            .clamp(1, WARM_MAX.min(self.spec.max_connections));
        if let Err(error) = verify(&pool, warm).await {
            tracing::error!(%error, user = %creds.username, "new credentials do not work; keeping the current ones");
            pool.close().await;
            let vault = self.vault.clone();
            self.retiring.spawn(async move {
                let _ = vault.revoke(&creds.lease_id).await;
            });
            return retry;
        }
        let number = old.number + 1;
        let record = record(number, &creds, reason, requested_at_ms);
        let old = self.db.swap(generation(number, pool, &creds), record);
        metrics::counter!(ROTATIONS_METRIC, "reason" => reason.as_str()).increment(1);
        tracing::info!(
            generation = number,
            user = %creds.username,
            old_user = %old.username,
            reason = reason.as_str(),
            ttl_secs = creds.lease_duration.as_secs(),
            "database credentials rotated"
        );
        let old_lease = std::mem::replace(&mut self.lease_id, creds.lease_id);
        self.schedule = LeaseSchedule::issued(Instant::now(), creds.lease_duration);
        self.retiring
            .spawn(retire(self.db.clone(), self.vault.clone(), old, old_lease));
        self.schedule.next()
    }
}

/// Step 4: drain the old pool, then revoke its lease. The naive arm revokes
/// first, killing whatever the old pool was still running.
async fn retire(db: Db, vault: VaultClient, old: Arc<Generation>, lease_id: String) {
    let naive = db.is_naive();
    if naive {
        revoke(&db, &vault, &old, &lease_id).await;
    }
    if tokio::time::timeout(DRAIN_LIMIT, old.pool.close())
        .await
        .is_err()
    {
        tracing::warn!(user = %old.username, "old pool did not drain in time; revoking anyway");
    }
    db.update(old.number, |r| r.drained_at_ms = Some(unix_ms()));
    if !naive {
        revoke(&db, &vault, &old, &lease_id).await;
    }
}

async fn revoke(db: &Db, vault: &VaultClient, old: &Generation, lease_id: &str) {
    match vault.revoke(lease_id).await {
        Ok(()) => db.update(old.number, |r| r.revoked_at_ms = Some(unix_ms())),
        Err(error) => {
            tracing::warn!(%error, user = %old.username, "could not revoke the old lease; Vault will expire it")
        }
    }
}
