//! Act: switch identity's rotation mode, log the sessions in, drive the
//! open-model load while `pg_stat_activity` is sampled, revoke the current
//! lease halfway and probe the token rules alongside; then read identity's
//! swap history. Returns what was [`Observed`] and what the report shows.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::evidence::{self, Observed, Rotation, Sample, unix_ms};
use super::identity::{self, Session, login_body, post, session_of, userinfo};
use super::plan::{MAX_SESSIONS, Params, SESSIONS, USERS};
use super::probes;
use crate::load::open::{self, Done, OpenModel};
use crate::run::Lab;

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

/// An arrival's exact outcome: `200` only with the body it should have.
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

/// The act's result: what the checks judge, and what only the report shows.
pub struct Acted {
    pub observed: Observed,
    /// Every request's intended send time and latency.
    pub samples: Vec<Sample>,
    /// Swaps during the load and the revoke, Unix ms (the windows' centres).
    pub events: Vec<u64>,
    /// Every login seen (sampled in Postgres or reported by identity).
    pub seen: BTreeSet<String>,
}

pub async fn run(lab: &Lab, admin: &str, p: &Params, seed: u64, urls: &[String]) -> Result<Acted> {
    for base in urls {
        if p.control {
            identity::set_naive(lab, admin, base, true).await?;
        }
        identity::rotate_now(lab, admin, base).await?;
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
    let sampler = tokio::spawn(evidence::sample_logins(lab.pg.clone(), stopped));
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
        identity::revoke_current(lab, admin, &urls[0]).await
    };
    let (run, rules, revoked) =
        tokio::join!(load, probes::token_rules(lab, admin, &urls[0]), revoker);
    let load_end_ms = unix_ms();
    let _ = stop.send(true);
    let (sampled, sample_errors) = sampler.await?;

    let mut histories = Vec::new();
    for base in urls {
        histories.push(identity::history(lab, admin, base).await?);
    }
    let during = |t: u64| (load_start_ms..=load_end_ms).contains(&t);
    let swaps: Vec<u64> = histories
        .iter()
        .flatten()
        .map(|r| r.swapped_in_at_ms)
        .filter(|t| during(*t))
        .collect();
    let mut events = swaps.clone();
    if let Ok(r) = &revoked {
        events.push(r.at_ms);
    }
    let distinct = sampled
        .values()
        .filter(|(first, last)| *last >= load_start_ms && *first <= load_end_ms)
        .count();
    let mut seen: BTreeSet<String> = sampled.into_keys().collect();
    seen.extend(histories.iter().flatten().map(|r| r.username.clone()));
    let samples = std::mem::take(&mut *fx.samples.lock().expect("not poisoned"));
    Ok(Acted {
        observed: Observed {
            load: run,
            rotation: Rotation {
                distinct,
                instances: urls.len(),
                duration: p.duration,
                ttl: p.ttl,
                sample_errors,
                swaps: swaps.len(),
            },
            revoked: revoked.map_err(|e| format!("{e:#}")),
            history: histories.swap_remove(0),
            rules,
        },
        samples,
        events,
        seen,
    })
}
