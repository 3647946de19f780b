//! Act: the open-model flood through the BFF instances, every answer
//! tallied per user (and per user and instance); and the `--compare-direct`
//! bench of cached GETs via the BFF and straight to a replica.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::arrange::Setup;
use super::plan::{ACCEPTED, MAX_IN_FLIGHT, OTHER, Params, REJECTED, route};
use crate::load::open::{self, Done, OpenModel, OpenRun};
use crate::run::record::outcome_of;
use crate::run::{Lab, Latencies, Outcomes};

/// What one session got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCount {
    pub sent: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// 429s whose `Retry-After` or `RateLimit` headers were missing or wrong.
    pub bad_rejections: u64,
    /// 5xx and transport errors.
    pub errors: u64,
}

/// The cached-GET comparison (`--compare-direct`): measured, judged by
/// nothing.
#[derive(Debug, Default)]
pub struct Bench {
    pub latencies: Latencies,
    pub outcomes: Outcomes,
}

/// One 200 or 429: when it was sent and how long its answer took from
/// then (its service time), so the checks can compare the two kinds over
/// the same stretch of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timed {
    pub sent: Instant,
    pub rejected: bool,
    pub took: Duration,
}

/// What the flood's clients saw.
#[derive(Debug)]
pub struct Acted {
    pub run: OpenRun,
    /// Per user.
    pub counts: Vec<SessionCount>,
    /// Acceptances per user and BFF instance.
    pub spread: Vec<Vec<u64>>,
    /// Every 200 and 429, in no particular order.
    pub timed: Vec<Timed>,
}

pub async fn flood(lab: &Lab, p: &Params, setup: &Setup) -> Acted {
    let (users, bffs, live) = (&setup.users, &setup.bffs, setup.live);
    let tallies = Arc::new(Mutex::new(vec![
        SessionCount::default();
        p.sessions as usize
    ]));
    // Acceptances per user and instance, to show each user's requests
    // really were spread.
    let spread = Arc::new(Mutex::new(vec![vec![0u64; bffs.len()]; users.len()]));
    let timed = Arc::new(Mutex::new(Vec::with_capacity(
        (u64::from(p.rps) * p.duration) as usize,
    )));
    let model = OpenModel {
        rate: f64::from(p.rps),
        duration: Duration::from_secs(p.duration),
        max_in_flight: MAX_IN_FLIGHT,
    };
    let urls: Arc<Vec<String>> = Arc::new(
        bffs.iter()
            .map(|b| format!("{b}/api/catalog{}", setup.path))
            .collect(),
    );
    let bearers: Arc<Vec<String>> = Arc::new(users.iter().map(|u| u.token.clone()).collect());
    let (sessions, instances) = (users.len() as u64, bffs.len() as u64);
    let run = open::drive(model, |i| {
        let (http, urls, tallies) = (lab.http.clone(), urls.clone(), tallies.clone());
        let (bearers, spread, timed) = (bearers.clone(), spread.clone(), timed.clone());
        let (s, b) = route(i, sessions, instances);
        let session = format!("flood-{}-{s}", setup.nonce);
        async move {
            let sent = Instant::now();
            let r = http
                .get(urls[b].as_str())
                .bearer_auth(&bearers[s])
                .header("x-session-id", session)
                .send()
                .await;
            let took = sent.elapsed();
            let mut t = SessionCount {
                sent: 1,
                ..SessionCount::default()
            };
            let label = match &r {
                Ok(r) if r.status() == 200 => {
                    t.accepted = 1;
                    spread.lock().unwrap_or_else(PoisonError::into_inner)[s][b] += 1;
                    ACCEPTED
                }
                Ok(r) if r.status() == 429 => {
                    t.rejected = 1;
                    let h = r.headers();
                    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
                    let fine = live.retry_after_ok(header("retry-after"))
                        && header("ratelimit").is_some_and(|v| v.contains("r=0"))
                        && header("ratelimit-policy").is_some();
                    t.bad_rejections = u64::from(!fine);
                    REJECTED
                }
                Ok(r) => {
                    t.errors = u64::from(r.status().is_server_error());
                    OTHER
                }
                Err(_) => {
                    t.errors = 1;
                    OTHER
                }
            };
            if label != OTHER {
                timed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Timed {
                        sent,
                        rejected: label == REJECTED,
                        took,
                    });
            }
            {
                let mut all = tallies.lock().unwrap_or_else(PoisonError::into_inner);
                let c = &mut all[s];
                c.sent += t.sent;
                c.accepted += t.accepted;
                c.rejected += t.rejected;
                c.bad_rejections += t.bad_rejections;
                c.errors += t.errors;
            }
            Done {
                label: label.into(),
                outcome: outcome_of(&r.map(|r| r.status())),
            }
        }
    })
    .await;
    let counts = tallies
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let spread = spread
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let timed = std::mem::take(&mut *timed.lock().unwrap_or_else(PoisonError::into_inner));
    Acted {
        run,
        counts,
        spread,
        timed,
    }
}

pub const VIA: &str = "cached GET via BFF";
pub const DIRECT: &str = "cached GET direct to a replica";

/// The gateway's added latency: the same cached read through the BFF and
/// straight to a replica, interleaved so both see the same machine.
pub async fn compare_direct(lab: &Lab, setup: &Setup, n: u32) -> Bench {
    let (bff, catalog, path) = (&setup.bffs[0], &setup.catalog, &setup.path);
    let mut lat = Latencies::default();
    let mut out = Outcomes::default();
    for i in 0..n {
        // Anonymous: a BFF that keys buckets by verified user, else by
        // client address, puts all of these in one bucket, so past its
        // burst some are 429s: they are listed in the outcomes and left out
        // of the latencies (only 200s are timed). The session ids matter
        // only to a BFF that still honours X-Session-Id.
        let session = format!("bench-{}-{}", setup.nonce, i % 64);
        let via = lab
            .http
            .get(format!("{bff}/api/catalog{path}"))
            .header("x-session-id", session);
        let direct = lab
            .http
            .get(format!("{}{path}", catalog[i as usize % catalog.len()]));
        let order = if i % 2 == 0 {
            [(VIA, via), (DIRECT, direct)]
        } else {
            [(DIRECT, direct), (VIA, via)]
        };
        for (label, request) in order {
            let t = Instant::now();
            let r = request.send().await;
            let took = t.elapsed();
            let cache = r
                .as_ref()
                .ok()
                .and_then(|r| r.headers().get("x-cache"))
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let status = outcome_of(&r.map(|r| r.status()));
            if status == "200" {
                lat.record(label, took);
            }
            out.add(label, format!("{status} x-cache={cache}"));
        }
    }
    Bench {
        latencies: lat,
        outcomes: out,
    }
}
