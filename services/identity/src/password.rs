//! Password checks with Argon2id, bounded. Hashes are PHC strings
//! (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), so each carries its own
//! parameters and old hashes keep verifying when the defaults change.
//!
//! Verification is deliberately slow and memory-hard: 19 MiB and tens of
//! milliseconds of CPU each. Run unbounded, 64 concurrent wrong guesses took
//! the service from 110 MB to 2.8 GB RSS, and glibc kept most of it after
//! they finished (freed 19 MiB blocks raise its mmap threshold, so later
//! ones come from per-thread arenas that are never returned). So
//! [`PasswordChecker`]:
//! - runs at most `permits` verifications at once (a [`Semaphore`], sized
//!   to the cores by default: more would only queue for CPU);
//! - lets a request wait for a permit at most `queue_deadline`; past it the
//!   request is shed ([`Busy`]: 503 + `Retry-After`) and no hash runs;
//! - gives each running verification a memory buffer from a pool of at
//!   most `permits` buffers, kept between checks and handed to
//!   [`Argon2::hash_password_into_with_memory`], so a burst of logins
//!   allocates nothing after the first `permits`;
//! - frees the pooled buffers once no check has run for `idle_release`
//!   (2 s by default). Kept forever they held `permits × 19 MiB` for the
//!   life of the process: 38 MiB of the 60 MB an otherwise idle identity
//!   sat at after a single login on a 2-core machine, close to the 64 MB
//!   every service must stay under. Freeing them only helps if glibc hands
//!   the memory back: a freed mmapped block of up to 32 MiB raises glibc's
//!   mmap threshold to its size, and from then on 19 MiB buffers come from
//!   its arenas, which keep them (the hoarding above). So each buffer
//!   reserves [`RESERVE_BLOCKS`] (33 MiB of address space, above that
//!   32 MiB cap): it is always its own mapping, freeing it unmaps it, and
//!   the threshold never moves. Only the blocks in use are ever touched,
//!   so RSS is 19 MiB per buffer, not 33.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use storefront_kit::sync::lock;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A hash of a password nobody has, checked when the user doesn't exist so
/// that "no such user" takes as long as "wrong password" (no user
/// enumeration by timing). Same parameters as the seeded users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$E/swPsjkEpikqG+B6x1/Vw$u15cC1/I41RgpVio740z1dj0+teTfRQbf+8mKskaHaw";

/// Largest `m` (KiB) a stored hash may ask for: a corrupt or hostile row
/// must not make one check allocate gigabytes. 64 MiB is 3× our default.
const MAX_MEMORY_KIB: u32 = 64 * 1024;
/// Largest decoded salt (PHC's limit).
const MAX_SALT_LEN: usize = 64;

/// Blocks (KiB) of address space a hashing buffer reserves at least: more
/// than glibc's largest dynamic mmap threshold (32 MiB on 64-bit), so the
/// buffer is always a mapping of its own and freeing it returns it to the
/// OS without raising the threshold (see the module docs).
pub const RESERVE_BLOCKS: usize = 33 * 1024;

/// How long pooled buffers outlive the last check by default.
pub const IDLE_RELEASE: Duration = Duration::from_secs(2);

/// Counter of checks shed at the queue deadline (no hash was run).
pub const SHED_METRIC: &str = "identity_password_checks_shed_total";
/// Counter of checks run, labelled `outcome` (`match`, `mismatch`).
pub const CHECKED_METRIC: &str = "identity_password_checks_total";

/// OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A fresh PHC string for `password` (random salt). For seeding users; the
/// service itself only verifies.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with valid parameters cannot fail")
        .to_string()
}

/// Whether `password` matches `phc`, computing the hash in `memory`
/// (resized to what the hash's parameters need). A malformed stored hash,
/// or one asking for more than [`MAX_MEMORY_KIB`], never matches.
pub fn verify_in(password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
    match recompute(password, phc, memory) {
        Ok(matched) => matched,
        Err(error) => {
            tracing::error!(%error, "stored password hash is unusable");
            false
        }
    }
}

/// [`verify_in`] with a one-off buffer (tests and tools).
pub fn verify(password: &str, phc: &str) -> bool {
    verify_in(password, phc, &mut Vec::new())
}

fn recompute(password: &str, phc: &str, memory: &mut Vec<Block>) -> Result<bool, String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| e.to_string())?;
    let version = Version::try_from(parsed.version.unwrap_or(0x13)).map_err(|e| e.to_string())?;
    let params = Params::try_from(&parsed).map_err(|e| e.to_string())?;
    if params.m_cost() > MAX_MEMORY_KIB {
        return Err(format!(
            "m={} KiB is over {MAX_MEMORY_KIB}",
            params.m_cost()
        ));
    }
    let expected = parsed.hash.ok_or("no hash part")?;
    let mut salt = [0u8; MAX_SALT_LEN];
    let salt = parsed
        .salt
        .ok_or("no salt")?
        .decode_b64(&mut salt)
        .map_err(|e| e.to_string())?;
    fit(memory, params.block_count());
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..])
        .map_err(|e| e.to_string())?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(|e| e.to_string())? == expected)
}

/// Makes `memory` exactly `blocks` long, reserving at least
/// [`RESERVE_BLOCKS`] when it has to allocate.
fn fit(memory: &mut Vec<Block>, blocks: usize) {
    if memory.len() == blocks {
        return;
    }
    let reserve = blocks.max(RESERVE_BLOCKS);
    if memory.capacity() < reserve {
        *memory = Vec::with_capacity(reserve);
    }
    memory.resize(blocks, Block::default());
}

/// No permit came free within the queue deadline; nothing was hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks in progress")]
pub struct Busy {
    /// What to tell the client in `Retry-After`.
    pub retry_after: Duration,
}

/// The right to run one check now; dropping it gives the turn away.
#[derive(Debug)]
pub struct Permit(OwnedSemaphorePermit);

/// A finished check. It still holds the permit: drop it once the outcome
/// is recorded.
#[derive(Debug)]
pub struct Checked {
    /// Whether the password matched.
    pub matched: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

/// Bounded, memory-reusing password verification (see the module docs).
#[derive(Clone)]
pub struct PasswordChecker {
    /// One permit per verification allowed to run.
    permits: Arc<Semaphore>,
    /// Longest wait for a permit before the request is shed.
    queue_deadline: Duration,
    /// Argon2 working memory, at most one buffer per permit.
    buffers: Arc<Mutex<Buffers>>,
    /// Pooled buffers are freed once no check has run for this long.
    idle_release: Duration,
}

/// The idle buffers, and a count of checks so a release can tell whether
/// one ran since it was scheduled.
#[derive(Default)]
struct Buffers {
    idle: Vec<Vec<Block>>,
    checks: u64,
}

impl PasswordChecker {
    /// `permits` is clamped to at least 1.
    pub fn new(permits: usize, queue_deadline: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits.max(1))),
            queue_deadline,
            buffers: Arc::new(Mutex::new(Buffers::default())),
            idle_release: IDLE_RELEASE,
        }
    }

    /// Frees pooled buffers after `idle` without a check (default [`IDLE_RELEASE`]).
    #[must_use]
    pub fn with_idle_release(mut self, idle: Duration) -> Self {
        self.idle_release = idle;
        self
    }

    /// Waits at most the queue deadline for a permit to run one check.
    /// Separate from [`PasswordChecker::verify`] so the caller can look at
    /// the guessing throttle again once its turn has come.
    pub async fn permit(&self) -> Result<Permit, Busy> {
        tokio::time::timeout(self.queue_deadline, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| self.shed())
            .map(|permit| Permit(permit.expect("the semaphore is never closed")))
    }

    /// Whether `password` matches `phc`, on the blocking pool under
    /// `permit`. `None` as the hash (unknown user) still spends the same
    /// time on [`DUMMY_HASH`] and answers `false`. The permit comes back in
    /// the [`Checked`], so the caller can record the outcome before the
    /// next check starts.
    pub async fn verify(&self, permit: Permit, password: String, phc: Option<String>) -> Checked {
        let Permit(permit) = permit;
        let buffers = self.buffers.clone();
        // The permit moves into the task and back out: if the client goes
        // away, the hash still holds its permit until it finishes.
        let task = tokio::task::spawn_blocking(move || {
            let mut memory = lock(&buffers).idle.pop().unwrap_or_default();
            let matched = match phc {
                Some(phc) => verify_in(&password, &phc, &mut memory),
                None => {
                    verify_in(&password, DUMMY_HASH, &mut memory);
                    false
                }
            };
            let checks = {
                let mut pool = lock(&buffers);
                pool.idle.push(memory);
                pool.checks += 1;
                pool.checks
            };
            (matched, permit, checks)
        });
        let task = async {
            let (matched, permit, checks) = task.await?;
            tokio::spawn(release_when_idle(
                self.buffers.clone(),
                checks,
                self.idle_release,
            ));
            Ok::<_, tokio::task::JoinError>((matched, permit))
        };
        let (matched, permit) = match task.await {
            Ok((matched, permit)) => (matched, Some(permit)),
            Err(_) => (false, None),
        };
        let outcome = if matched { "match" } else { "mismatch" };
        metrics::counter!(CHECKED_METRIC, "outcome" => outcome).increment(1);
        Checked {
            matched,
            _permit: permit,
        }
    }

    /// [`PasswordChecker::permit`] then [`PasswordChecker::verify`].
    pub async fn check(&self, password: String, phc: Option<String>) -> Result<bool, Busy> {
        let permit = self.permit().await?;
        Ok(self.verify(permit, password, phc).await.matched)
    }

    /// Permits free right now (tests, and the shed decision's log line).
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }

    /// Buffers held for reuse (at most the permit count).
    pub fn pooled_buffers(&self) -> usize {
        lock(&self.buffers).idle.len()
    }

    fn shed(&self) -> Busy {
        metrics::counter!(SHED_METRIC).increment(1);
        tracing::warn!(
            deadline_ms = self.queue_deadline.as_millis() as u64,
            "password check shed: no hashing permit within the queue deadline"
        );
        Busy {
            retry_after: retry_after(self.queue_deadline),
        }
    }
}

/// Frees the idle buffers `after` the check that made the count `checks`,
/// unless another check finished meanwhile (its own release comes later).
async fn release_when_idle(buffers: Arc<Mutex<Buffers>>, checks: u64, after: Duration) {
    tokio::time::sleep(after).await;
    let freed = {
        let mut pool = lock(&buffers);
        (pool.checks == checks).then(|| std::mem::take(&mut pool.idle))
    };
    // Dropped outside the lock: unmapping 19 MiB is not free.
    drop(freed);
}

/// `Retry-After` for a shed check: the queue deadline rounded up to whole
/// seconds, at least 1.
fn retry_after(deadline: Duration) -> Duration {
    Duration::from_secs(deadline.as_secs() + u64::from(deadline.subsec_nanos() > 0))
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_and_nothing_else() {
        let phc = hash("alice-password");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("alice-password", &phc));
        assert!(!verify("alice-password ", &phc));
        assert!(!verify("alice-password", "not a phc string"));
    }

    #[test]
    fn a_reused_buffer_verifies_like_a_fresh_one_even_across_parameters() {
        let small = {
            let params = Params::new(8 * 1024, 1, 1, None).unwrap();
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"pw", &SaltString::generate(&mut OsRng))
                .unwrap()
                .to_string()
        };
        let standard = hash("pw");
        let mut memory = Vec::new();
        for _ in 0..2 {
            assert!(verify_in("pw", &standard, &mut memory));
            assert_eq!(memory.len(), 19 * 1024);
            assert!(verify_in("pw", &small, &mut memory));
            assert!(!verify_in("wrong", &small, &mut memory));
            assert_eq!(memory.len(), 8 * 1024);
        }
    }

    #[test]
    fn a_buffer_reserves_more_than_glibcs_largest_mmap_threshold_but_uses_what_it_needs() {
        let mut memory = Vec::new();
        assert!(verify_in("pw", &hash("pw"), &mut memory));
        assert_eq!(memory.len(), 19 * 1024);
        // Over 32 MiB: freeing it unmaps it and leaves glibc's threshold alone.
        assert!(memory.capacity() * Block::SIZE > 32 * 1024 * 1024);
    }

    #[tokio::test]
    async fn pooled_buffers_are_freed_once_no_check_ran_for_the_idle_period() {
        let checker = PasswordChecker::new(2, Duration::from_secs(5))
            .with_idle_release(Duration::from_millis(20));
        assert_eq!(checker.check("pw".into(), Some(hash("pw"))).await, Ok(true));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while checker.pooled_buffers() > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the idle buffer was still pooled 10 s after the only check"
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn a_release_scheduled_before_a_later_check_keeps_the_buffers() {
        let buffers = Arc::new(Mutex::new(Buffers {
            idle: vec![Vec::new()],
            checks: 2,
        }));
        // Scheduled by check 1; check 2 ran since: its own release decides.
        release_when_idle(buffers.clone(), 1, Duration::ZERO).await;
        assert_eq!(buffers.lock().unwrap().idle.len(), 1);
        release_when_idle(buffers.clone(), 2, Duration::ZERO).await;
        assert!(buffers.lock().unwrap().idle.is_empty());
    }

    #[test]
    fn a_stored_hash_asking_for_too_much_memory_never_matches() {
        let huge = "$argon2id$v=19$m=1048576,t=2,p=1$E/swPsjkEpikqG+B6x1/Vw$u15cC1/I41RgpVio740z1dj0+teTfRQbf+8mKskaHaw";
        let mut memory = Vec::new();
        assert!(!verify_in("anything", huge, &mut memory));
        assert!(memory.is_empty(), "nothing was allocated");
    }

    #[test]
    fn dummy_hash_parses_so_unknown_users_cost_a_real_verification() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[test]
    fn retry_after_is_the_deadline_in_whole_seconds() {
        assert_eq!(retry_after(Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(
            retry_after(Duration::from_millis(2_100)),
            Duration::from_secs(3)
        );
        assert_eq!(retry_after(Duration::ZERO), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        let checker = PasswordChecker::new(1, Duration::from_secs(5));
        assert_eq!(checker.check("anything".into(), None).await, Ok(false));
    }

    #[tokio::test]
    async fn checks_past_the_permits_are_shed_at_the_deadline_and_buffers_stay_bounded() {
        let checker = PasswordChecker::new(2, Duration::from_millis(1));
        let phc = hash("pw");
        let results = futures::future::join_all(
            (0..16).map(|_| checker.check("wrong".into(), Some(phc.clone()))),
        )
        .await;
        let shed = results.iter().filter(|r| r.is_err()).count();
        let ran = results.iter().filter(|r| **r == Ok(false)).count();
        assert_eq!(shed + ran, 16);
        assert!(ran >= 2, "the permits ran: {ran}");
        assert!(
            shed > 0,
            "16 checks at once with 2 permits and a 1 ms deadline: none shed"
        );
        assert_eq!(checker.available(), 2, "every permit came back");
        assert!(
            checker.pooled_buffers() <= 2,
            "one buffer per permit at most"
        );
    }

    /// Prints PHC strings for the seed migrations:
    /// `cargo test -p storefront-identity -- --ignored print_seed_hashes --nocapture`.
    #[test]
    #[ignore = "a tool, not a test"]
    fn print_seed_hashes() {
        for user in [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
        ] {
            println!("{user}: {}", hash(&format!("{user}-password")));
        }
    }
}
