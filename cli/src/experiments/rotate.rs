//! `storefront rotate`: steady open-model load on the identity service
//! (logins, refreshes, userinfo, revocations — all reaching its database)
//! while its Vault-issued Postgres credentials rotate every few seconds, and
//! the CLI revokes the current lease through Vault's API mid-run.
//!
//! Arrange: shorten the Vault role's TTLs (`--ttl` is the credential's
//! lifetime: `max_ttl`; `default_ttl` is half) and make identity pick them
//! up now (`POST /lab/rotate`). Act: drive the load; sample Postgres's
//! `pg_stat_activity` for the logins in use; revoke the current lease
//! halfway; check the token rules meanwhile. Check: no request failed, the
//! logins rotated at least as often as `max_ttl` forces, the revoked lease
//! was replaced, every superseded role is gone from `pg_roles`, and the
//! token rules held. The role's TTLs are restored whatever happens.
//!
//! The control arm (`--control`) switches identity to naive rotation (old
//! leases revoked before their pool drains, no retry): the checks must
//! catch the failed requests.
//!
//! Identity's `/lab/…` routes and its lab-only `access_ttl_secs` need the
//! lab admin token (the fleet gives every service the profile's bff
//! `BFF_ADMIN_TOKEN` as `LAB_ADMIN_TOKEN`); the experiment sends it on those
//! calls only, never on the load's requests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

use super::breaker::ADMIN_TOKEN_VAR;
use super::record::{Latencies, summarize};
use super::{Invariant, Lab, Report};
use crate::exit::{self, Exit};
use crate::fleet::profile::FleetProfile;
use crate::fleet::vault::Vault;
use crate::load::open::{self, Done, OpenModel};
use crate::load::profile::parse_duration;

/// The service under test, its Vault role and its logins' name pattern.
const SERVICE: &str = "identity";
/// Half-width of a rotation window around each swap.
const WINDOW: Duration = Duration::from_secs(1);
/// How often `pg_stat_activity` is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// Sessions logged in before the load, and the most kept.
const SESSIONS: usize = 16;
const MAX_SESSIONS: usize = 64;
/// Seeded users; each one's password is `<name>-password`.
const USERS: [&str; 4] = ["alice", "bob", "carol", "dave"];
const LABEL_ROTATION: &str = "all requests, rotation windows (±1 s of a swap or the revoke)";
const LABEL_STEADY: &str = "all requests, steady windows";

#[derive(Debug, Clone, clap::Args)]
pub struct Params {
    /// How long the load runs.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests per second (open model: arrivals don't wait for answers).
    #[arg(long, default_value_t = 50.0, value_parser = parse_rps)]
    pub rps: f64,
    /// Lifetime of each credential during the run (the Vault role's max_ttl; default_ttl is half); at least 2s.
    #[arg(long, default_value = "5s", value_parser = parse_ttl)]
    pub ttl: Duration,
    /// Control arm: identity rotates naively (revokes before draining, no retry); the checks must catch it.
    #[arg(long)]
    pub control: bool,
}

fn parse_rps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (1.0..=2000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "`{s}` is not a rate between 1 and 2000 requests per second"
        )),
    }
}

fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_secs(2) || d.subsec_nanos() != 0 {
        return Err(format!(
            "`{s}`: the TTL is whole seconds, at least 2s (Vault counts in seconds)"
        ));
    }
    Ok(d)
}

/// A logged-in client: used by one request at a time.
#[derive(Debug, Clone)]
struct Session {
    access: String,
    refresh: String,
}

/// One request's timing, for the window histograms.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Intended send time, Unix ms.
    pub sent_ms: u64,
    /// From intended send to answer.
    pub latency: Duration,
}

/// What the load's requests share.
struct Fixture {
    http: reqwest::Client,
    urls: Vec<String>,
    sessions: Mutex<Vec<Session>>,
    samples: Mutex<Vec<Sample>>,
}

impl Fixture {
    fn take(&self) -> Option<Session> {
        self.sessions.lock().expect("not poisoned").pop()
    }

    fn give(&self, s: Session) {
        let mut sessions = self.sessions.lock().expect("not poisoned");
        if sessions.len() < MAX_SESSIONS {
            sessions.insert(0, s);
        }
    }

    fn url(&self, i: u64, path: &str) -> String {
        format!("{}{path}", self.urls[i as usize % self.urls.len()])
    }
}

/// POST JSON; the status and the body (`Null` if not JSON).
async fn post(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
) -> Result<(u16, Value), reqwest::Error> {
    let r = http.post(url).json(body).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

async fn userinfo(
    http: &reqwest::Client,
    url: &str,
    access: &str,
) -> Result<(u16, Value), reqwest::Error> {
    let r = http.get(url).bearer_auth(access).send().await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

fn session_of(body: &Value) -> Option<Session> {
    Some(Session {
        access: body["access_token"].as_str()?.to_owned(),
        refresh: body["refresh_token"].as_str()?.to_owned(),
    })
}

fn login_body(user: &str) -> Value {
    json!({"grant_type": "password", "username": user, "password": format!("{user}-password")})
}

/// One arrival: a weighted choice of what a client does.
async fn one_request(fx: Arc<Fixture>, i: u64, roll: f64) -> Done {
    let user = USERS[i as usize % USERS.len()];
    let session = if roll < 0.10 { None } else { fx.take() };
    let (label, outcome) = match session {
        None => {
            let r = post(&fx.http, &fx.url(i, "/token"), &login_body(user)).await;
            if let Ok((200, body)) = &r
                && let Some(s) = session_of(body)
            {
                fx.give(s);
            }
            (
                "POST /token (password)",
                outcome(&r, |b| session_of(b).is_some()),
            )
        }
        Some(s) if roll < 0.45 => {
            let body = json!({"grant_type": "refresh_token", "refresh_token": s.refresh});
            let r = post(&fx.http, &fx.url(i, "/token"), &body).await;
            if let Ok((200, body)) = &r
                && let Some(s) = session_of(body)
            {
                fx.give(s);
            }
            (
                "POST /token (refresh)",
                outcome(&r, |b| session_of(b).is_some()),
            )
        }
        Some(s) if roll < 0.90 => {
            let r = userinfo(&fx.http, &fx.url(i, "/userinfo"), &s.access).await;
            // Still valid unless refused: a failure must not shrink the
            // session pool and turn the mix into a login storm.
            if !matches!(r, Ok((401, _))) {
                fx.give(s);
            }
            ("GET /userinfo", outcome(&r, |b| b["sub"].is_string()))
        }
        Some(s) => {
            let r = post(&fx.http, &fx.url(i, "/revoke"), &json!({"token": s.access})).await;
            ("POST /revoke", outcome(&r, |b| b["revoked"] == true))
        }
    };
    Done {
        label: label.into(),
        outcome,
    }
}

fn outcome(r: &Result<(u16, Value), reqwest::Error>, body_ok: impl Fn(&Value) -> bool) -> String {
    match r {
        Ok((200, body)) if body_ok(body) => "200".into(),
        Ok((200, _)) => "200 (unexpected body)".into(),
        Ok((status, _)) => status.to_string(),
        Err(e) if e.is_timeout() => "error: timeout".into(),
        Err(e) if e.is_connect() => "error: connect".into(),
        Err(_) => "error: other".into(),
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The Vault role's TTLs in seconds, as read before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RoleTtls {
    default_ttl: u64,
    max_ttl: u64,
}

fn vault(lab: &Lab) -> Vault<'_> {
    Vault {
        client: &lab.http,
        addr: &lab.state.endpoints.vault_addr,
        token: &lab.state.endpoints.vault_token,
    }
}

async fn role_ttls(lab: &Lab) -> Result<RoleTtls> {
    let role = vault(lab)
        .call(Method::GET, &format!("database/roles/{SERVICE}"), None)
        .await
        .context(
            "cannot read identity's Vault role (does the profile mark it dynamic_credentials?)",
        )?;
    let secs = |k: &str| {
        role["data"][k]
            .as_u64()
            .with_context(|| format!("Vault role without {k}"))
    };
    Ok(RoleTtls {
        default_ttl: secs("default_ttl")?,
        max_ttl: secs("max_ttl")?,
    })
}

async fn set_role_ttls(lab: &Lab, ttls: RoleTtls) -> Result<()> {
    let body = json!({"default_ttl": ttls.default_ttl, "max_ttl": ttls.max_ttl});
    vault(lab)
        .call(
            Method::POST,
            &format!("database/roles/{SERVICE}"),
            Some(body),
        )
        .await
        .map(drop)
}

/// The lab admin token: the fleet profile's bff `BFF_ADMIN_TOKEN`, which the
/// fleet hands every service as `LAB_ADMIN_TOKEN`.
fn admin_token(lab: &Lab) -> Result<String> {
    let (profile, path) = FleetProfile::load(&crate::fleet::project_root()?, &lab.state.profile)?;
    crate::fleet::services::lab_admin_token(&profile)
        .map(str::to_owned)
        .ok_or_else(|| {
            Exit::error(
                exit::ERROR,
                format!(
                    "{} sets no {ADMIN_TOKEN_VAR} in the bff's env: identity's lab endpoints refuse every call without it",
                    path.display()
                ),
            )
        })
}

/// `GET /lab/lease` of one instance.
async fn lease(lab: &Lab, admin: &str, base: &str) -> Result<Value> {
    let r = lab
        .http
        .get(format!("{base}/lab/lease"))
        .bearer_auth(admin)
        .send()
        .await?;
    match r.status() {
        reqwest::StatusCode::NOT_FOUND => Err(Exit::error(
            exit::ERROR,
            "identity's lab endpoints are off: set `lab_endpoints = true` in the fleet profile",
        )),
        reqwest::StatusCode::UNAUTHORIZED => Err(Exit::error(
            exit::ERROR,
            format!(
                "identity refused the lab admin token (401): is the fleet's LAB_ADMIN_TOKEN the profile's bff {ADMIN_TOKEN_VAR}? Restart the fleet after changing it"
            ),
        )),
        _ => Ok(r.error_for_status()?.json().await?),
    }
}

async fn rotate_now(lab: &Lab, admin: &str, base: &str) -> Result<()> {
    let r = lab
        .http
        .post(format!("{base}/lab/rotate"))
        .bearer_auth(admin)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!(
            "POST {base}/lab/rotate answered {}: {}",
            r.status(),
            r.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

async fn set_naive(lab: &Lab, admin: &str, base: &str, naive: bool) -> Result<()> {
    lab.http
        .put(format!("{base}/lab/rotation-mode"))
        .bearer_auth(admin)
        .json(&json!({ "naive": naive }))
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

/// Logins of the service seen in `pg_stat_activity`, with when each was
/// first and last seen (Unix ms), until `stop`.
async fn sample_logins(
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

/// What the CLI revoked mid-run.
#[derive(Debug, Clone)]
struct Revoked {
    at_ms: u64,
    username: String,
    generation: u64,
}

async fn revoke_current(lab: &Lab, admin: &str, base: &str) -> Result<Revoked> {
    let current = lease(lab, admin, base).await?;
    let lease_id = current["lease_id"]
        .as_str()
        .context("identity reports no lease")?;
    let at_ms = unix_ms();
    vault(lab)
        .call(
            Method::PUT,
            "sys/leases/revoke",
            Some(json!({ "lease_id": lease_id })),
        )
        .await?;
    Ok(Revoked {
        at_ms,
        username: current["username"].as_str().unwrap_or_default().to_owned(),
        generation: current["generation"].as_u64().unwrap_or_default(),
    })
}

pub async fn run(lab: &Lab, p: &Params, seed: u64) -> Result<Report> {
    let started = Instant::now();
    let mut report = Report::new(
        "rotate",
        seed,
        json!({"duration_s": p.duration.as_secs_f64(), "rps": p.rps, "ttl_s": p.ttl.as_secs(), "control": p.control}),
    );
    let urls = lab.urls(SERVICE)?.to_vec();
    let admin = admin_token(lab)?;
    for base in &urls {
        lease(lab, &admin, base).await?;
    }
    let original = role_ttls(lab).await?;
    let short = RoleTtls {
        default_ttl: p.ttl.as_secs().div_ceil(2),
        max_ttl: p.ttl.as_secs(),
    };
    set_role_ttls(lab, short).await?;
    let outcome = act_and_check(lab, &admin, p, seed, &urls, &mut report).await;
    // Restore whatever happened: the role's TTLs, the rotation mode, and a
    // rotation so the short-lived credentials are replaced now.
    let restored = restore(lab, &admin, &urls, original).await;
    let seen = outcome?;
    match restored {
        Ok(current) => superseded_gone(lab, p, &seen, &current, &mut report).await,
        Err(e) => report.push(Invariant::unknown(
            "every superseded role is gone from pg_roles and holds no connection",
            "none left",
            format!("identity could not be restored after the run: {e:#}"),
        )),
    }
    report.conclude(started.elapsed());
    Ok(report)
}

async fn restore(
    lab: &Lab,
    admin: &str,
    urls: &[String],
    original: RoleTtls,
) -> Result<Vec<String>> {
    set_role_ttls(lab, original).await?;
    let mut current = Vec::new();
    for base in urls {
        set_naive(lab, admin, base, false).await?;
        rotate_now(lab, admin, base).await?;
        current.push(
            lease(lab, admin, base).await?["username"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    Ok(current)
}

/// Arrange the short TTLs, drive the load with the revoke and the token
/// rules alongside, and push every invariant but the last. Returns every
/// login seen (sampled in Postgres or reported by identity).
async fn act_and_check(
    lab: &Lab,
    admin: &str,
    p: &Params,
    seed: u64,
    urls: &[String],
    report: &mut Report,
) -> Result<BTreeSet<String>> {
    for base in urls {
        if p.control {
            set_naive(lab, admin, base, true).await?;
        }
        rotate_now(lab, admin, base).await?;
    }
    let fx = Arc::new(Fixture {
        http: lab.http.clone(),
        urls: urls.to_vec(),
        sessions: Mutex::new(Vec::new()),
        samples: Mutex::new(Vec::new()),
    });
    for i in 0..SESSIONS {
        let user = USERS[i % USERS.len()];
        let (status, body) = post(&fx.http, &fx.url(i as u64, "/token"), &login_body(user)).await?;
        let s = session_of(&body)
            .with_context(|| format!("arrange: logging in {user} answered {status}: {body}"))?;
        fx.give(s);
    }

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample_logins(lab.pg.clone(), stopped));
    let model = OpenModel {
        rate: p.rps,
        duration: p.duration,
        max_in_flight: 512,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (t0, load_start_ms) = (Instant::now(), unix_ms());
    let load = open::drive(model, |i| {
        let (fx, roll) = (fx.clone(), rng.random::<f64>());
        let (intended, sent_ms) = (
            t0 + model.due(i),
            load_start_ms + model.due(i).as_millis() as u64,
        );
        async move {
            let done = one_request(fx.clone(), i, roll).await;
            let latency = intended.elapsed();
            fx.samples
                .lock()
                .expect("not poisoned")
                .push(Sample { sent_ms, latency });
            done
        }
    });
    let revoker = async {
        tokio::time::sleep(p.duration / 2).await;
        revoke_current(lab, admin, &urls[0]).await
    };
    let (run, rules, revoked) = tokio::join!(load, token_rules(lab, admin, &urls[0]), revoker);
    let load_end_ms = unix_ms();
    let _ = stop.send(true);
    let (sampled, sample_errors) = sampler.await?;

    let mut histories = Vec::new();
    for base in urls {
        histories.push(
            lease(lab, admin, base).await?["history"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    let during = |t: u64| (load_start_ms..=load_end_ms).contains(&t);
    let swaps: Vec<u64> = histories
        .iter()
        .flatten()
        .filter_map(|r| r["swapped_in_at_ms"].as_u64())
        .filter(|t| during(*t))
        .collect();
    let mut events = swaps.clone();
    if let Ok(r) = &revoked {
        events.push(r.at_ms);
    }

    report.push(failed_requests(&run.outcomes, run.dropped));
    let in_load: BTreeSet<&String> = sampled
        .iter()
        .filter(|(_, (first, last))| *last >= load_start_ms && *first <= load_end_ms)
        .map(|(n, _)| n)
        .collect();
    let expected = expected_logins(p.duration, p.ttl) * urls.len() as u64;
    report.push(Invariant::check(
        "the logins rotated at least as often as max_ttl forces",
        in_load.len() as u64 >= expected,
        format!("≥ {expected} distinct logins ({}s of load / {}s max_ttl, per instance)", p.duration.as_secs_f64(), p.ttl.as_secs()),
        format!("{} distinct logins", in_load.len()),
        format!(
            "Postgres: pg_stat_activity sampled every {} ms ({sample_errors} failed samples); identity reports {} swaps during the load",
            SAMPLE_EVERY.as_millis(),
            swaps.len()
        ),
    ));
    report.push(match &revoked {
        Ok(r) => replaced_invariant(r, &histories[0]),
        Err(e) => Invariant::unknown(
            "a lease revoked in Vault mid-load is replaced without a restart",
            "a new login within 5 s",
            format!("the revoke itself failed: {e:#}"),
        ),
    });
    for inv in rules {
        report.push(inv);
    }

    let samples = std::mem::take(&mut *fx.samples.lock().expect("not poisoned"));
    let windows = split_windows(&samples, &events, WINDOW);
    for label in [LABEL_ROTATION, LABEL_STEADY] {
        if let Some(h) = windows.get(label) {
            report.measure(
                &format!("p99, {label}"),
                format!("{:.2} ms ({} requests)", summarize(h).p99_ms, h.len()),
            );
        }
    }
    report.measure("rotations during the load (identity's swaps)", swaps.len());
    report.measure("distinct logins seen in pg_stat_activity", in_load.len());
    report.measure(
        "arrivals sent / dropped, worst send lag",
        format!(
            "{} / {}, {:.1} ms",
            run.sent,
            run.dropped,
            run.max_send_lag.as_secs_f64() * 1000.0
        ),
    );
    report.outcomes = run.outcomes;
    report.latencies = run.latencies;
    report.latencies.merge(&windows);

    let mut seen: BTreeSet<String> = sampled.into_keys().collect();
    seen.extend(
        histories
            .iter()
            .flatten()
            .filter_map(|r| r["username"].as_str().map(str::to_owned)),
    );
    Ok(seen)
}

/// Polls until none of the superseded logins (everything seen but the
/// instances' current ones) exists in `pg_roles` or holds a session.
async fn superseded_gone(
    lab: &Lab,
    p: &Params,
    seen: &BTreeSet<String>,
    current: &[String],
    report: &mut Report,
) {
    let gone: Vec<String> = seen
        .iter()
        .filter(|n| !current.contains(n))
        .cloned()
        .collect();
    let limit = p.ttl + Duration::from_secs(15);
    let t = Instant::now();
    let mut left = (Vec::<String>::new(), Vec::<String>::new());
    let read_error = loop {
        let roles = sqlx::query_scalar::<_, String>(
            "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1)",
        )
        .bind(&gone)
        .fetch_all(&lab.pg)
        .await;
        let sessions = sqlx::query_scalar::<_, String>(
            "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE usename = ANY($1)",
        )
        .bind(&gone)
        .fetch_all(&lab.pg)
        .await;
        let read_error = match (roles, sessions) {
            (Ok(r), Ok(s)) => {
                left = (r, s);
                None
            }
            (Err(e), _) | (_, Err(e)) => Some(e.to_string()),
        };
        let clear = read_error.is_none() && left.0.is_empty() && left.1.is_empty();
        if clear || t.elapsed() > limit {
            break read_error;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let name = "every superseded role is gone from pg_roles and holds no connection";
    let expected = format!(
        "0 of {} superseded logins left, within {} s",
        gone.len(),
        limit.as_secs()
    );
    report.push(match read_error {
        Some(e) => Invariant::unknown(name, expected, format!("Postgres read failed: {e}")),
        None => Invariant::check(
            name,
            left.0.is_empty() && left.1.is_empty() && !gone.is_empty(),
            expected,
            if left.0.is_empty() && left.1.is_empty() {
                format!("0 of {} left after {} ms", gone.len(), t.elapsed().as_millis())
            } else {
                format!("roles left: {:?}; with sessions: {:?}", left.0, left.1)
            },
            format!("Postgres: pg_roles and pg_stat_activity for every login seen except the current one(s) {current:?}"),
        ),
    });
}

/// The token rules, checked while the credentials rotate underneath.
async fn token_rules(lab: &Lab, admin: &str, base: &str) -> Vec<Invariant> {
    vec![
        revoked_jti_rejected(lab, base).await,
        reuse_revokes_family(lab, base).await,
        expired_token_rejected(lab, admin, base).await,
    ]
}

fn status_reason(r: &Result<(u16, Value), reqwest::Error>) -> String {
    match r {
        Ok((s, body)) => match body["reason"].as_str() {
            Some(reason) => format!("{s} ({reason})"),
            None => s.to_string(),
        },
        Err(e) => format!("error: {e}"),
    }
}

async fn redis_ttl(lab: &Lab, key: &str) -> Result<i64> {
    let client = redis::Client::open(lab.state.endpoints.redis_url.as_str())?;
    let mut c = client.get_multiplexed_async_connection().await?;
    Ok(redis::cmd("TTL").arg(key).query_async(&mut c).await?)
}

async fn revoked_jti_rejected(lab: &Lab, base: &str) -> Invariant {
    let name = "a revoked jti is rejected";
    let expected = "GET /userinfo 200, POST /revoke 200, then GET /userinfo 401 (revoked); Redis key identity:revoked:<jti> lives until exp";
    let evidence = "identity's GET /userinfo (verifies the JWT, checks the Redis denylist; the BFF does not validate tokens yet); Redis TTL of the key";
    let login = post(&lab.http, &format!("{base}/token"), &login_body("alice")).await;
    let Ok((200, body)) = &login else {
        return Invariant::check(
            name,
            false,
            expected,
            format!("login: {}", status_reason(&login)),
            evidence,
        );
    };
    let (access, jti, ttl) = (
        body["access_token"].as_str().unwrap_or_default(),
        body["jti"].as_str().unwrap_or_default(),
        body["expires_in"].as_i64().unwrap_or_default(),
    );
    let before = userinfo(&lab.http, &format!("{base}/userinfo"), access).await;
    let revoke = post(
        &lab.http,
        &format!("{base}/revoke"),
        &json!({ "token": access }),
    )
    .await;
    let after = userinfo(&lab.http, &format!("{base}/userinfo"), access).await;
    let key_ttl = redis_ttl(lab, &format!("identity:revoked:{jti}")).await;
    let holds = matches!(before, Ok((200, _)))
        && matches!(&revoke, Ok((200, b)) if b["revoked"] == true)
        && matches!(&after, Ok((401, b)) if b["reason"] == "revoked")
        && matches!(key_ttl, Ok(t) if t > 0 && t <= ttl);
    Invariant::check(
        name,
        holds,
        expected,
        format!(
            "{} → revoke {} → {}; key TTL {}",
            status_reason(&before),
            status_reason(&revoke),
            status_reason(&after),
            key_ttl.map_or_else(
                |e| format!("unreadable ({e})"),
                |t| format!("{t} s of {ttl} s")
            ),
        ),
        evidence,
    )
}

async fn reuse_revokes_family(lab: &Lab, base: &str) -> Invariant {
    let name = "a reused refresh token revokes its family";
    let expected = "refresh r1 → 200 (r2); r1 again → 400 (reuse_detected); r2 → 400 (family_revoked); Postgres: family revoked_reason = reuse_detected";
    let evidence =
        "POST /token grant_type=refresh_token; identity.refresh_families joined on sha256(r1)";
    let url = format!("{base}/token");
    let refresh = |t: &str| json!({"grant_type": "refresh_token", "refresh_token": t});
    let login = post(&lab.http, &url, &login_body("bob")).await;
    let Some(first) = login.as_ref().ok().and_then(|(_, b)| session_of(b)) else {
        return Invariant::check(
            name,
            false,
            expected,
            format!("login: {}", status_reason(&login)),
            evidence,
        );
    };
    let rotated = post(&lab.http, &url, &refresh(&first.refresh)).await;
    let second = rotated.as_ref().ok().and_then(|(_, b)| session_of(b));
    let reused = post(&lab.http, &url, &refresh(&first.refresh)).await;
    let successor = match &second {
        Some(s) => status_reason(&post(&lab.http, &url, &refresh(&s.refresh)).await),
        None => "no r2".into(),
    };
    let family: Result<Option<String>, _> = sqlx::query_scalar(
        "SELECT f.revoked_reason FROM identity.refresh_families f \
         JOIN identity.refresh_tokens t ON t.family_id = f.id \
         WHERE t.token_hash = sha256(convert_to($1, 'UTF8'))",
    )
    .bind(&first.refresh)
    .fetch_one(&lab.pg)
    .await;
    let family = family.map_or_else(
        |e| format!("unreadable ({e})"),
        |r| r.unwrap_or_else(|| "not revoked".into()),
    );
    let observed = format!(
        "{}; r1 again {}; r2 {successor}; family {family}",
        status_reason(&rotated),
        status_reason(&reused)
    );
    let holds = matches!(rotated, Ok((200, _)))
        && status_reason(&reused) == "400 (reuse_detected)"
        && successor == "400 (family_revoked)"
        && family == "reuse_detected";
    Invariant::check(name, holds, expected, observed, evidence)
}

async fn expired_token_rejected(lab: &Lab, admin: &str, base: &str) -> Invariant {
    let name = "an expired access token is rejected";
    let expected =
        "a token minted with a 1 s lifetime gets 401 (expired) from GET /userinfo within 5 s";
    let evidence = "POST /token with the lab-only access_ttl_secs = 1 (and the lab admin token), then GET /userinfo polled every 100 ms";
    let body = json!({"grant_type": "password", "username": "carol", "password": "carol-password", "access_ttl_secs": 1});
    let login = async {
        let r = lab
            .http
            .post(format!("{base}/token"))
            .bearer_auth(admin)
            .json(&body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok::<_, reqwest::Error>((status, r.json().await.unwrap_or(Value::Null)))
    }
    .await;
    let Some(s) = login.as_ref().ok().and_then(|(_, b)| session_of(b)) else {
        return Invariant::check(
            name,
            false,
            expected,
            format!("login: {}", status_reason(&login)),
            evidence,
        );
    };
    let t = Instant::now();
    let (mut accepted, mut last) = (0, String::new());
    while t.elapsed() < Duration::from_secs(5) {
        let r = userinfo(&lab.http, &format!("{base}/userinfo"), &s.access).await;
        last = status_reason(&r);
        if !matches!(r, Ok((200, _))) {
            break;
        }
        accepted += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Invariant::check(
        name,
        last == "401 (expired)",
        expected,
        format!(
            "{last} after {} ms ({accepted} accepted before)",
            t.elapsed().as_millis()
        ),
        evidence,
    )
}

/// Every arrival answered 200 with the body it should have.
pub fn failed_requests(outcomes: &super::Outcomes, dropped: u64) -> Invariant {
    let (mut total, mut failed) = (0, Vec::new());
    for (label, counts) in &outcomes.0 {
        for (outcome, n) in counts {
            total += n;
            if outcome != "200" {
                failed.push(format!("{label}: {n}× {outcome}"));
            }
        }
    }
    Invariant::check(
        "zero failed requests",
        failed.is_empty() && dropped == 0 && total > 0,
        "every request answered 200",
        if failed.is_empty() {
            format!("{total} of {total} answered 200")
        } else {
            failed.join("; ")
        },
        format!(
            "exact outcome of every arrival of the open-model load ({dropped} dropped by the generator)"
        ),
    )
}

/// Logins a run of `duration` needs at least when none may live longer
/// than `max_ttl`: ⌈duration / max_ttl⌉.
pub fn expected_logins(duration: Duration, max_ttl: Duration) -> u64 {
    (duration.as_secs_f64() / max_ttl.as_secs_f64()).ceil() as u64
}

/// The revoked login must be succeeded in identity's history, soon.
fn replaced_invariant(revoked: &Revoked, history: &[Value]) -> Invariant {
    let name = "a lease revoked in Vault mid-load is replaced without a restart";
    let expected = "a newer generation swapped in within 5 s of the revoke";
    let next = history
        .iter()
        .find(|r| r["generation"].as_u64() > Some(revoked.generation));
    let observed = next.map(|r| {
        let at = r["swapped_in_at_ms"].as_u64().unwrap_or_default();
        (
            at.saturating_sub(revoked.at_ms),
            r["generation"].as_u64().unwrap_or_default(),
            r["reason"].as_str().unwrap_or("?").to_owned(),
        )
    });
    Invariant::check(
        name,
        observed.as_ref().is_some_and(|(ms, ..)| *ms <= 5_000),
        expected,
        match &observed {
            Some((ms, g, reason)) => format!(
                "generation {} → {g} after {ms} ms ({reason})",
                revoked.generation
            ),
            None => format!("generation {} never replaced", revoked.generation),
        },
        format!(
            "PUT /v1/sys/leases/revoke of {}'s lease; identity's GET /lab/lease history",
            revoked.username
        ),
    )
}

/// Latency of every request, split by whether it was sent within `half`
/// of an event (a swap, the revoke).
pub fn split_windows(samples: &[Sample], events_ms: &[u64], half: Duration) -> Latencies {
    let half = half.as_millis() as u64;
    let mut out = Latencies::default();
    for s in samples {
        let near = events_ms.iter().any(|e| s.sent_ms.abs_diff(*e) <= half);
        out.record(if near { LABEL_ROTATION } else { LABEL_STEADY }, s.latency);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiments::{Outcomes, Verdict};

    #[test]
    fn any_non_200_or_drop_fails_the_run() {
        let mut o = Outcomes::default();
        o.add("GET /userinfo", "200");
        assert_eq!(failed_requests(&o, 0).verdict, Verdict::Pass);
        assert_eq!(failed_requests(&o, 1).verdict, Verdict::Fail);
        o.add("POST /token (refresh)", "500");
        let inv = failed_requests(&o, 0);
        assert_eq!(inv.verdict, Verdict::Fail);
        assert!(inv.observed.contains("1× 500"), "{}", inv.observed);
        assert_eq!(
            failed_requests(&Outcomes::default(), 0).verdict,
            Verdict::Fail
        );
    }

    #[test]
    fn max_ttl_bounds_the_number_of_logins() {
        assert_eq!(
            expected_logins(Duration::from_secs(20), Duration::from_secs(5)),
            4
        );
        assert_eq!(
            expected_logins(Duration::from_secs(12), Duration::from_secs(5)),
            3
        );
        assert_eq!(
            expected_logins(Duration::from_secs(60), Duration::from_secs(5)),
            12
        );
    }

    #[test]
    fn requests_near_an_event_land_in_the_rotation_window() {
        let sample = |sent_ms, ms| Sample {
            sent_ms,
            latency: Duration::from_millis(ms),
        };
        let samples = [
            sample(900, 5),
            sample(2_500, 50),
            sample(3_000, 40),
            sample(9_000, 6),
        ];
        let w = split_windows(&samples, &[2_000], Duration::from_secs(1));
        assert_eq!(w.get(LABEL_ROTATION).unwrap().len(), 2, "±1 s, inclusive");
        assert_eq!(w.get(LABEL_STEADY).unwrap().len(), 2);
    }

    #[test]
    fn a_revoked_generation_never_replaced_or_replaced_late_fails() {
        let revoked = Revoked {
            at_ms: 10_000,
            username: "v-token-identity-x".into(),
            generation: 3,
        };
        let history = vec![
            json!({"generation": 3, "swapped_in_at_ms": 5_000, "reason": "max_ttl"}),
            json!({"generation": 4, "swapped_in_at_ms": 10_120, "reason": "connection_failed"}),
        ];
        assert_eq!(
            replaced_invariant(&revoked, &history).verdict,
            Verdict::Pass
        );
        assert_eq!(
            replaced_invariant(&revoked, &history[..1]).verdict,
            Verdict::Fail
        );
        let late =
            vec![json!({"generation": 4, "swapped_in_at_ms": 16_000, "reason": "renewal_refused"})];
        assert_eq!(replaced_invariant(&revoked, &late).verdict, Verdict::Fail);
    }

    #[test]
    fn ttl_must_be_whole_seconds_of_at_least_two() {
        assert_eq!(parse_ttl("5s"), Ok(Duration::from_secs(5)));
        assert!(parse_ttl("1s").is_err());
        assert!(parse_ttl("2500ms").is_err());
        assert!(parse_rps("0").is_err());
    }
}
