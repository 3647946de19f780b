//! What a rotate run saw, as plain data the pure [`super::check`] judges,
//! and the Postgres reads that gather it (`pg_stat_activity`, `pg_roles`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;

use super::plan::{SAMPLE_EVERY, SERVICE};
use crate::clients::contract::identity::Record;
use crate::load::open::OpenRun;

/// Now, Unix ms: the clock the swap history and the samples share.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What identity answered a request: status and JSON body (`Null` if not
/// JSON), or the transport error's text.
pub type Answer = Result<(u16, Value), String>;

/// One request's timing, for the window histograms.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Intended send time, Unix ms.
    pub sent_ms: u64,
    /// From intended send to answer.
    pub latency: Duration,
}

/// What the CLI revoked mid-run.
#[derive(Debug, Clone)]
pub struct Revoked {
    pub at_ms: u64,
    pub username: String,
    pub generation: u64,
}

/// How often the logins changed during the load.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// Distinct logins seen in `pg_stat_activity` while the load ran.
    pub distinct: usize,
    /// Identity instances (each rotates its own credentials).
    pub instances: usize,
    pub duration: Duration,
    /// The credentials' lifetime (the role's `max_ttl`).
    pub ttl: Duration,
    /// `pg_stat_activity` samples that failed.
    pub sample_errors: u32,
    /// Swaps identity reported during the load.
    pub swaps: usize,
}

/// A token-rule probe: its login failed (the answer), or it ran.
#[derive(Debug, Clone)]
pub enum Probe<T> {
    NoLogin(Answer),
    Ran(T),
}

/// A revoked jti: userinfo before, the revoke, userinfo after, and the
/// denylist key's TTL against the token's lifetime.
#[derive(Debug, Clone)]
pub struct JtiSeen {
    pub before: Answer,
    pub revoke: Answer,
    pub after: Answer,
    pub key_ttl: Result<i64, String>,
    /// The token's `expires_in`, seconds.
    pub ttl: i64,
}

/// A reused refresh token: r1 → r2, r1 again, r2 (if there was one), and
/// the family's `revoked_reason` in Postgres.
#[derive(Debug, Clone)]
pub struct ReuseSeen {
    pub rotated: Answer,
    pub reused: Answer,
    pub successor: Option<Answer>,
    pub family: Result<Option<String>, String>,
}

/// A 1 s token polled until refused: the last answer (none if never
/// polled), how many were accepted first, and how long it took.
#[derive(Debug, Clone)]
pub struct ExpirySeen {
    pub last: Option<Answer>,
    pub accepted: u32,
    pub took_ms: u128,
}

/// The three token rules, probed while the credentials rotate.
#[derive(Debug, Clone)]
pub struct Rules {
    pub jti: Probe<JtiSeen>,
    pub reuse: Probe<ReuseSeen>,
    pub expiry: Probe<ExpirySeen>,
}

/// What the load phase saw, from the clients' side and identity's.
#[derive(Debug)]
pub struct Observed {
    /// The open-model load (exact outcome of every arrival).
    pub load: OpenRun,
    pub rotation: Rotation,
    /// The mid-run revoke, or why it failed.
    pub revoked: Result<Revoked, String>,
    /// The first instance's swap history (the revoked one's).
    pub history: Vec<Record>,
    pub rules: Rules,
}

/// The superseded logins after the run: which were expected gone, what was
/// left, read until clear or `limit`.
#[derive(Debug, Clone)]
pub struct Superseded {
    pub gone: Vec<String>,
    pub current: Vec<String>,
    pub limit: Duration,
    /// Roles still in `pg_roles`, and logins still holding a session; or
    /// why Postgres could not be read.
    pub left: Result<(Vec<String>, Vec<String>), String>,
    pub took: Duration,
}

/// Logins of the service seen in `pg_stat_activity`, with when each was
/// first and last seen (Unix ms), until `stop`; and the failed samples.
pub async fn sample_logins(
    pg: PgPool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (BTreeMap<String, (u64, u64)>, u32) {
    let (mut seen, mut errors) = (BTreeMap::<String, (u64, u64)>::new(), 0);
    let pattern = format!("v-%-{SERVICE}-%");
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let rows: Result<Vec<String>, _> = sqlx::query_scalar(
            "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE usename LIKE $1",
        )
        .bind(&pattern)
        .fetch_all(&pg)
        .await;
        let now = unix_ms();
        match rows {
            Ok(names) => {
                for n in names {
                    seen.entry(n)
                        .and_modify(|e| e.1 = now)
                        .or_insert((now, now));
                }
            }
            Err(_) => errors += 1,
        }
    }
    (seen, errors)
}

/// Read after identity is restored: the superseded logins, or why
/// identity could not be restored.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub superseded: Result<Superseded, String>,
}

/// Polls until none of `gone` exists in `pg_roles` or holds a session, or
/// `limit` passes.
pub async fn superseded(
    pg: &PgPool,
    gone: Vec<String>,
    current: Vec<String>,
    limit: Duration,
) -> Superseded {
    let t = Instant::now();
    let mut last = (Vec::<String>::new(), Vec::<String>::new());
    let read_error = loop {
        let roles = sqlx::query_scalar::<_, String>(
            "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
        )
        .bind(&gone)
        .fetch_all(pg)
        .await;
        let sessions = sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE usename = ANY($1)",
        )
        .bind(&gone)
        .fetch_all(pg)
        .await;
        let read_error = match (roles, sessions) {
            (Ok(r), Ok(s)) => {
                last = (r, s);
                None
            }
            (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
        };
        let clear = read_error.is_none() && last.0.is_empty() && last.1.is_empty();
        if clear || t.elapsed() > limit {
            break read_error;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    Superseded {
        gone,
        current,
        limit,
        left: read_error.map_or(Ok(last), Err),
        took: t.elapsed(),
    }
}
