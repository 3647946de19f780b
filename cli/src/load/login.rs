//! Real users for load through the BFF: each scenario logs in as a
//! customer (the seeded ones, round-robin over the users) or as staff
//! (catalog writes need the `staff` role), with the password grant through
//! the BFF (`POST /api/identity/token`), and sends `Authorization: Bearer`
//! on every request. The BFF then keys its rate limit by the user, so a
//! profile's users share as many buckets as there are accounts.
//!
//! One token per account, shared by the users that log in as it: a login
//! runs Argon2 in identity, so logging in per user (or per open-model pass)
//! would load identity more than the traffic being measured. A token is
//! renewed by logging in again once most of its lifetime has passed (runs
//! outlast the 300 s access tokens); a refresh grant would do, but two
//! users renewing the same account at once would then trip identity's
//! refresh-reuse detection. Failed logins are counted and shown; a user
//! whose login failed sends nothing until a later attempt succeeds, and
//! the run's "every login succeeded" invariant fails.
//!
//! Direct to the services there is no login: that is the lab's own access.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use tokio::time::Instant;

use super::profile::Login;
use super::target::Targets;
use crate::run::accounts::{self, CUSTOMERS, STAFF};

/// After a failed login, an account is not tried again for this long (a
/// failing identity is not hammered by every user's every transaction).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// The account `user` logs in as for a scenario that needs `login`.
pub fn account(login: Login, user: usize) -> &'static str {
    match login {
        Login::Customer => CUSTOMERS[user % CUSTOMERS.len()],
        Login::Staff => STAFF,
    }
}

/// When a token that lived `lifetime` from `issued` is renewed: after four
/// fifths of it, and never later than 10 s before it expires.
pub fn renew_at(issued: Instant, lifetime: Duration) -> Instant {
    let early = lifetime.saturating_sub(Duration::from_secs(10));
    issued + (lifetime * 4 / 5).min(early)
}

/// The `sub` (user id) an access token names. The token is not verified
/// here (the BFF does that); the id only fills `{customer}` in bodies.
pub fn subject(jwt: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
    }
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Claims>(&bytes).ok().map(|c| c.sub)
}

/// A logged-in account.
#[derive(Debug, Clone)]
pub struct Session {
    /// The access token, for `Authorization: Bearer`.
    pub token: String,
    /// The account's user id (the token's `sub`), for `{customer}`.
    pub user_id: String,
}

/// One account's login state.
#[derive(Default)]
struct Slot {
    session: Option<(Session, Instant)>,
    /// No new attempt before this (after a failure).
    blocked_until: Option<Instant>,
}

/// Login counts for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginTally {
    pub ok: u64,
    pub failed: u64,
    /// The last failure, as said by the BFF or the client.
    pub last_error: Option<String>,
}

/// The logins of one run through the BFF.
pub struct Logins {
    http: reqwest::Client,
    targets: Targets,
    /// One per account: [`CUSTOMERS`], then [`STAFF`]. An async mutex, so
    /// users of one account wait for its single login instead of each
    /// starting one.
    slots: Vec<tokio::sync::Mutex<Slot>>,
    ok: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

impl Logins {
    /// Logins through the BFF; `None` when the load goes direct.
    pub fn new(targets: &Targets, http: reqwest::Client) -> Option<Self> {
        matches!(targets, Targets::Bff(_)).then(|| Self {
            http,
            targets: targets.clone(),
            slots: (0..=CUSTOMERS.len())
                .map(|_| tokio::sync::Mutex::new(Slot::default()))
                .collect(),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
        })
    }

    /// `user`'s session for a scenario that needs `login`: the account's
    /// current token, or a fresh login when it has none or it is due for
    /// renewal. `None` when the login failed (counted).
    pub async fn session(&self, login: Login, user: usize) -> Option<Session> {
        let name = account(login, user);
        let index = match login {
            Login::Customer => user % CUSTOMERS.len(),
            Login::Staff => CUSTOMERS.len(),
        };
        let mut slot = self.slots[index].lock().await;
        let now = Instant::now();
        if let Some((session, renew)) = &slot.session
            && now < *renew
        {
            return Some(session.clone());
        }
        if slot.blocked_until.is_some_and(|t| now < t) {
            return None;
        }
        match self.login(name, user).await {
            Ok((session, lifetime)) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                slot.session = Some((session.clone(), renew_at(now, lifetime)));
                slot.blocked_until = None;
                Some(session)
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().expect("not poisoned") = Some(format!("{name}: {e}"));
                slot.session = None;
                slot.blocked_until = Some(Instant::now() + RETRY_AFTER_FAILURE);
                None
            }
        }
    }

    /// Logs every account the scenarios use in before the load starts, so
    /// logins stay out of the measured window and bad credentials (or a
    /// BFF that cannot reach identity) stop the run before it begins.
    pub async fn warm(&self, logins: impl Iterator<Item = Login>) -> anyhow::Result<()> {
        let mut users: Vec<(Login, usize)> = Vec::new();
        for login in logins {
            let n = match login {
                Login::Customer => CUSTOMERS.len(),
                Login::Staff => 1,
            };
            users.extend((0..n).map(|u| (login, u)));
        }
        users.sort_unstable_by_key(|&(l, u)| (l == Login::Staff, u));
        users.dedup();
        for (login, user) in users {
            if self.session(login, user).await.is_none() {
                let why = self.tally().last_error.unwrap_or_default();
                anyhow::bail!(
                    "cannot log in as {} through the BFF before the load: {why}",
                    account(login, user)
                );
            }
        }
        Ok(())
    }

    /// One password grant through the BFF.
    async fn login(&self, name: &str, pick: usize) -> Result<(Session, Duration), String> {
        let url = self.targets.url("identity", "/token", pick);
        let response = self
            .http
            .post(&url)
            .json(&serde_json::json!({
                "grant_type": "password",
                "username": name,
                "password": accounts::password(name),
            }))
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let body: String = body.chars().take(200).collect();
            return Err(format!("POST {url}: {status}: {body}"));
        }
        let token: TokenResponse = response
            .json()
            .await
            .map_err(|e| format!("POST {url}: not a token response: {e}"))?;
        let user_id = subject(&token.access_token)
            .ok_or_else(|| format!("POST {url}: the access token names no user (sub)"))?;
        Ok((
            Session {
                token: token.access_token,
                user_id,
            },
            Duration::from_secs(token.expires_in),
        ))
    }

    /// How the logins went.
    pub fn tally(&self) -> LoginTally {
        LoginTally {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last_error: self.last_error.lock().expect("not poisoned").clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_are_spread_round_robin_and_staff_is_dave() {
        let names: Vec<&str> = (0..9).map(|u| account(Login::Customer, u)).collect();
        assert_eq!(
            names,
            [
                "alice", "bob", "carol", "erin", "frank", "grace", "heidi", "alice", "bob"
            ]
        );
        assert_eq!(account(Login::Staff, 3), "dave");
    }

    #[test]
    fn a_token_is_renewed_well_before_it_expires() {
        let t0 = Instant::now();
        assert_eq!(
            renew_at(t0, Duration::from_secs(300)),
            t0 + Duration::from_secs(240)
        );
        // Short lifetimes: at most 10 s before the end, never after it.
        assert_eq!(
            renew_at(t0, Duration::from_secs(30)),
            t0 + Duration::from_secs(20)
        );
        assert_eq!(renew_at(t0, Duration::from_secs(5)), t0);
    }

    /// A one-route HTTP server on loopback that answers every request with
    /// `status` and `body`, counting the requests.
    async fn fake_bff(
        status: &'static str,
        body: String,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut buf = vec![0u8; 8192];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            }
        });
        (base, hits)
    }

    fn token_for(sub: &str, expires_in: u64) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!("h.{}.s", enc(&format!(r#"{{"sub":"{sub}"}}"#)));
        format!(r#"{{"access_token":"{jwt}","expires_in":{expires_in}}}"#)
    }

    #[tokio::test]
    async fn a_failed_login_is_counted_with_its_reason_and_not_retried_at_once() {
        let (base, hits) = fake_bff(
            "401 Unauthorized",
            r#"{"title":"invalid credentials"}"#.into(),
        )
        .await;
        let logins = Logins::new(&Targets::Bff(vec![base]), reqwest::Client::new()).unwrap();
        assert!(logins.session(Login::Customer, 0).await.is_none());
        assert!(logins.session(Login::Customer, 7).await.is_none());
        let t = logins.tally();
        assert_eq!((t.ok, t.failed), (0, 1), "{t:?}");
        let why = t.last_error.unwrap();
        assert!(why.starts_with("alice: POST "), "{why}");
        assert!(why.contains("/api/identity/token: 401"), "{why}");
        assert_eq!(hits.load(Ordering::SeqCst), 1, "retried at once");
        let e = logins.warm([Login::Staff].into_iter()).await.unwrap_err();
        assert!(e.to_string().contains("cannot log in as dave"), "{e}");
    }

    #[tokio::test]
    async fn an_accounts_users_share_one_login_until_it_is_due_for_renewal() {
        let sub = "0b6f7c3e-0000-4000-8000-000000000001";
        let (base, hits) = fake_bff("200 OK", token_for(sub, 300)).await;
        let logins =
            Logins::new(&Targets::Bff(vec![base.clone()]), reqwest::Client::new()).unwrap();
        let a = logins.session(Login::Customer, 0).await.unwrap();
        let b = logins.session(Login::Customer, 7).await.unwrap();
        assert_eq!(a.user_id, sub);
        assert_eq!(a.token, b.token);
        assert_eq!(
            hits.load(Ordering::SeqCst),
            1,
            "users 0 and 7 are both alice"
        );
        logins.session(Login::Customer, 1).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2, "user 1 is bob");

        // A token about to expire is renewed by logging in again.
        let (base, hits) = fake_bff("200 OK", token_for(sub, 5)).await;
        let logins = Logins::new(&Targets::Bff(vec![base]), reqwest::Client::new()).unwrap();
        logins.session(Login::Staff, 0).await.unwrap();
        logins.session(Login::Staff, 0).await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(logins.tally().ok, 2);
    }

    #[test]
    fn direct_load_logs_in_as_no_one() {
        let direct = Targets::Direct(std::collections::BTreeMap::new());
        assert!(Logins::new(&direct, reqwest::Client::new()).is_none());
    }

    #[test]
    fn the_subject_is_read_from_the_tokens_payload() {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let jwt = format!(
            "{}.{}.sig",
            enc(r#"{"alg":"EdDSA"}"#),
            enc(r#"{"sub":"0b6f7c3e-0000-4000-8000-000000000001","exp":1}"#)
        );
        assert_eq!(
            subject(&jwt).as_deref(),
            Some("0b6f7c3e-0000-4000-8000-000000000001")
        );
        assert_eq!(subject("not-a-jwt"), None);
        assert_eq!(subject(&format!("a.{}.c", enc(r#"{"exp":1}"#))), None);
    }
}
