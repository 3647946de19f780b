//! The open model (`--rate N`): N scenario passes start per second, each on
//! schedule whatever the earlier ones are doing (`load::open` drives the
//! arrivals). A pass runs its transactions in order with think time; the
//! first request's latency counts from the arrival's intended time, each
//! later one's from when it was due (the previous answer plus think time).
//! goose is not involved: its users are closed-model by construction.

use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;

use super::closed;
use super::open::{self, Done, OpenModel, OpenRun};
use super::plan::{Rendered, Shared};
use super::profile::Method;
use super::recorder::Sample;
use super::template::Bindings;
use crate::experiments::record::outcome_of;

/// Streams of the seed: arrival `i` draws from stream `ARRIVALS + i`, away
/// from the closed model's per-user streams.
const ARRIVALS: u64 = 1 << 32;

pub async fn run(shared: Arc<Shared>, model: OpenModel, http: reqwest::Client) -> OpenRun {
    let mut pick = StdRng::seed_from_u64(shared.seed);
    let t0 = Instant::now();
    open::drive(model, move |i| {
        let s = shared.plan.pick_scenario(&mut pick);
        let intended = t0 + model.due(i);
        let (shared, http) = (shared.clone(), http.clone());
        async move { pass(&shared, &http, s, i, intended).await }
    })
    .await
}

async fn pass(
    shared: &Shared,
    http: &reqwest::Client,
    s: usize,
    i: u64,
    intended: Instant,
) -> Done {
    let mut b = Bindings::new(shared.seed, ARRIVALS + i, i as usize);
    let mut due = intended;
    let mut all_ok = true;
    let scenario = &shared.plan.scenarios[s];
    for ti in scenario.pass(&shared.plan) {
        let tx = &shared.plan.txs[ti];
        // Through the BFF: arrival i logs in as customer i mod 7 (or staff);
        // a failed login is counted there and ends the pass unsent.
        let session = match &shared.logins {
            Some(logins) => match logins.session(tx.login, i as usize).await {
                Some(s) => Some(s),
                None => {
                    return Done {
                        label: format!("pass: {}", scenario.name),
                        outcome: "login failed".into(),
                    };
                }
            },
            None => None,
        };
        let r = tx.render(
            &shared.targets,
            &shared.world,
            &mut b,
            i as usize,
            session.as_ref(),
        );
        let sent = Instant::now();
        let (outcome, status) = send(http, tx.method, r).await;
        let now = Instant::now();
        let ok = status.is_some_and(|s| tx.is_success(s));
        all_ok &= ok;
        shared.recorder.record(
            i as usize,
            Sample {
                tx: ti,
                raw: now - sent,
                corrected: Some(now - due),
                outcome: &outcome,
                ok,
            },
        );
        let think = shared.plan.think(b.rng());
        if think > Duration::ZERO {
            tokio::time::sleep(think).await;
        }
        due = now + think;
    }
    Done {
        label: format!("pass: {}", scenario.name),
        outcome: if all_ok { "ok" } else { "failed" }.into(),
    }
}

/// Sends one request and reads the whole body; the outcome label and status.
async fn send(http: &reqwest::Client, m: Method, r: Rendered) -> (String, Option<u16>) {
    let method = match m {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
    };
    let mut req = http.request(method, &r.url);
    for (k, v) in &r.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(body) = r.body {
        req = req.header("content-type", "application/json").body(body);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let replayed = resp
                .headers()
                .get(closed::REPLAYED)
                .is_some_and(|v| v == "true");
            match resp.bytes().await {
                Ok(_) => (closed::outcome_label(status, replayed), Some(status)),
                Err(e) => (outcome_of(&Err(e)), None),
            }
        }
        Err(e) => (outcome_of(&Err(e)), None),
    }
}
