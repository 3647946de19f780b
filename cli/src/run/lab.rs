//! The running fleet as experiments see it: its services' URLs and direct
//! connections to the ground truth (Postgres as superuser).
//!
//! Connecting also takes the fleet's **lab lock** (issue 12, defect h): two
//! experiments on one fleet read each other's traffic as their own (`flood`
//! counted the upstream's requests while `saga` ran) and give false
//! verdicts. The lock is an exclusive `flock` on `lab.lock` in the state
//! dir, held for as long as the [`Lab`] lives (the kernel drops it when the
//! process dies, so a crashed run never leaves it stuck). A second run waits
//! up to [`LOCK_WAIT`], saying so on stderr, then exits 3 naming the holder.
//! Within one process the lock is shared, so `verify` holds it once for the
//! whole gate.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::progress::Progress;
use crate::exit::{self, Exit};
use crate::fleet::{Ctx, FleetState, observe};

/// Half the services' header-read timeout (the kit's `CLIENT_IDLE_TIMEOUT`).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The lab lock's file in the state dir; it holds the holder's description.
pub const LOCK_FILE: &str = crate::fleet::LAB_LOCK_FILE;
/// How long an experiment waits for another to finish before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

pub struct Lab {
    /// Held for the whole run; see the module docs.
    _lock: Arc<FleetLock>,
    pub state: FleetState,
    /// Superuser pool on the storefront database, for ground truth.
    pub pg: PgPool,
    /// Client for the services: no proxy, pooled, generous timeout.
    pub http: reqwest::Client,
    /// Where the run's progress events go (none unless the command says).
    pub progress: Progress,
}

impl Lab {
    /// Connects to the fleet recorded in the state dir; `unknown` (exit 2)
    /// when there is none or it isn't healthy, saying how to start it.
    pub async fn connect(ctx: &Ctx) -> Result<Self> {
        let Some(state) = FleetState::load(&ctx.state_dir)? else {
            return Err(Exit::error(
                exit::UNKNOWN,
                format!(
                    "no fleet is up in {}: start one with `storefront up` (nothing was judged)",
                    ctx.state_dir.display()
                ),
            ));
        };
        // After the state is found (so no fleet means no lock file), before
        // it is judged healthy (another run may be mid-fault).
        let lock = FleetLock::acquire(&ctx.state_dir, LOCK_WAIT).await?;
        let seen = observe::observe(&state).await;
        let bad: Vec<String> = seen
            .iter()
            .filter(|c| c.state != "ready")
            .map(|c| format!("{} ({})", c.name, c.state))
            .collect();
        if !bad.is_empty() {
            return Err(Exit::error(
                exit::UNKNOWN,
                format!(
                    "the fleet is not healthy: {}; see `storefront status` (nothing was judged)",
                    bad.join(", ")
                ),
            ));
        }
        let pg = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&state.endpoints.postgres_admin_url)
            .await
            .context("ground truth: cannot connect to Postgres as superuser")?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(256)
            // Services close a keep-alive connection idle for 10 s (their
            // header-read timeout); dropping ours at 5 s means a request is
            // never written into a socket the server is closing.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            _lock: lock,
            state,
            pg,
            http,
            progress: Progress::none(),
        })
    }

    /// The same lab, its run's progress going to `progress`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// Base URLs of a service's instances.
    pub fn urls(&self, service: &str) -> Result<&[String]> {
        self.state
            .endpoints
            .services
            .get(service)
            .map(Vec::as_slice)
            .filter(|u| !u.is_empty())
            .with_context(|| {
                format!(
                    "the fleet's profile `{}` runs no `{service}` service",
                    self.state.profile
                )
            })
    }
}

/// This process's hold on a fleet's lab lock; unlocked when the last clone
/// drops (closing the file releases the `flock`).
#[derive(Debug)]
pub struct FleetLock {
    /// The locked file; dropping it unlocks.
    _file: Flock<File>,
    /// Its path, to share the hold within this process.
    path: PathBuf,
}

/// The locks this process holds, so a second [`Lab::connect`] in the same
/// process (verify's gate) shares its fleet's instead of waiting on itself.
static HELD: Mutex<Vec<Weak<FleetLock>>> = Mutex::new(Vec::new());

impl FleetLock {
    /// Takes the lab lock in `state_dir`, waiting up to `wait` for another
    /// process to release it; exit 3 naming the holder if it doesn't.
    pub async fn acquire(state_dir: &Path, wait: Duration) -> Result<Arc<Self>> {
        let path = state_dir.join(LOCK_FILE);
        if let Some(lock) = shared(&path) {
            return Ok(lock);
        }
        let deadline = Instant::now() + wait;
        let mut said = false;
        let file = loop {
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .with_context(|| format!("cannot open the lab lock {}", path.display()))?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => break locked,
                Err((_, Errno::EWOULDBLOCK)) => {}
                Err((_, error)) => {
                    return Err(error).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
            let holder = holder(&path);
            if Instant::now() >= deadline {
                return Err(Exit::error(
                    exit::ERROR,
                    format!(
                        "another experiment holds this fleet ({holder}); waited {wait:?} for it. \
                         Two experiments on one fleet judge each other's traffic: wait for it, \
                         or use another --state-dir/--port-base"
                    ),
                ));
            }
            if !said {
                eprintln!(
                    "waiting up to {wait:?} for another experiment on this fleet to finish ({holder})"
                );
                said = true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        write_holder(&file)?;
        let lock = Arc::new(Self { _file: file, path });
        HELD.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::downgrade(&lock));
        Ok(lock)
    }
}

/// This process's live hold on the lock at `path`, if any.
fn shared(path: &Path) -> Option<Arc<FleetLock>> {
    let mut held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    held.retain(|lock| lock.strong_count() > 0);
    held.iter()
        .filter_map(Weak::upgrade)
        .find(|l| l.path == path)
}

/// Records who holds the lock: pid, command line, since when.
fn write_holder(mut file: &File) -> Result<()> {
    let command: Vec<String> = std::env::args().skip(1).collect();
    let line = format!(
        "pid {} running `storefront {}` since {}\n",
        std::process::id(),
        command.join(" "),
        chrono::Utc::now().format("%H:%M:%SZ")
    );
    file.set_len(0)?;
    file.write_all(line.as_bytes())?;
    Ok(())
}

/// Who holds the lock at `path`, as its holder recorded it.
fn holder(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "holder unknown".to_owned())
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    fn exit_of(error: &anyhow::Error) -> Option<(u8, String)> {
        error
            .downcast_ref::<Exit>()
            .map(|e| (e.code, e.message.clone()))
    }

    #[tokio::test]
    async fn a_second_experiment_gives_up_after_the_bound_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        // Another process's hold: a separate open file description.
        let other = File::create(dir.path().join(LOCK_FILE)).unwrap();
        let other = Flock::lock(other, FlockArg::LockExclusiveNonblock).unwrap();
        (&*other)
            .write_all(b"pid 4242 running `storefront saga` since 08:00:00Z\n")
            .unwrap();
        let started = Instant::now();
        let error = FleetLock::acquire(dir.path(), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let (code, message) = exit_of(&error).unwrap();
        assert_eq!(code, exit::ERROR);
        assert!(message.contains("pid 4242"), "{message}");
        assert!(message.contains("storefront saga"), "{message}");
    }

    #[tokio::test]
    async fn the_lock_is_taken_once_released_within_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let other = File::create(dir.path().join(LOCK_FILE)).unwrap();
        let other = Flock::lock(other, FlockArg::LockExclusiveNonblock).unwrap();
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            drop(other);
        });
        let lock = FleetLock::acquire(dir.path(), Duration::from_secs(5)).await;
        release.await.unwrap();
        let lock = lock.unwrap();
        assert!(holder(&lock.path).contains(&format!("pid {}", std::process::id())));
    }

    #[tokio::test]
    async fn one_process_shares_its_hold_so_verify_does_not_wait_on_itself() {
        let dir = tempfile::tempdir().unwrap();
        let first = FleetLock::acquire(dir.path(), Duration::ZERO)
            .await
            .unwrap();
        let second = FleetLock::acquire(dir.path(), Duration::ZERO)
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        // Another open file description still conflicts: the hold is real.
        let other = File::open(dir.path().join(LOCK_FILE)).unwrap();
        let Err((other, _)) = Flock::lock(other, FlockArg::LockExclusiveNonblock) else {
            panic!("locked twice");
        };
        drop((first, second));
        assert!(Flock::lock(other, FlockArg::LockExclusiveNonblock).is_ok());
    }
}
