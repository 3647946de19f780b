//! Password checks with Argon2id. Hashes are PHC strings
//! (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`), so each carries its own
//! parameters and old hashes keep verifying when the defaults change.
//!
//! Verification is deliberately slow (tens of milliseconds): it runs on the
//! blocking pool so it never stalls the async workers.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// A hash of a password nobody has, checked when the user doesn't exist so
/// that "no such user" takes as long as "wrong password" (no user
/// enumeration by timing). Same parameters as the seeded users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$E/swPsjkEpikqG+B6x1/Vw$u15cC1/I41RgpVio740z1dj0+teTfRQbf+8mKskaHaw";

/// OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static Argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A fresh PHC string for `password` (random salt).
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2 with valid parameters cannot fail")
        .to_string()
}

/// Whether `password` matches `phc`; a malformed stored hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(error) => {
            tracing::error!(%error, "stored password hash is not a PHC string");
            false
        }
    }
}

/// [`verify`] on the blocking pool; `None` as the hash (unknown user) still
/// spends the same time on [`DUMMY_HASH`] and answers `false`.
pub async fn verify_blocking(password: String, phc: Option<String>) -> bool {
    let task = tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify(&password, &phc),
        None => {
            verify(&password, DUMMY_HASH);
            false
        }
    });
    task.await.unwrap_or(false)
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
    fn dummy_hash_parses_so_unknown_users_cost_a_real_verification() {
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }

    #[tokio::test]
    async fn unknown_user_never_verifies() {
        assert!(!verify_blocking("anything".into(), None).await);
    }

    /// Prints PHC strings for the seed migration:
    /// `cargo test -p storefront-identity -- --ignored print_seed_hashes --nocapture`.
    #[test]
    #[ignore = "a tool, not a test"]
    fn print_seed_hashes() {
        for user in ["alice", "bob", "carol", "dave"] {
            println!("{user}: {}", hash(&format!("{user}-password")));
        }
    }
}
