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
use super::pace::Pace;
use super::plan::Shared;
use super::target::ConnPool;
use super::template::Bindings;

/// Streams of the seed: arrival `i` draws from stream `ARRIVALS + i`, away
/// from the closed model's per-user streams.
const ARRIVALS: u64 = 1 << 32;

/// Runs the open model. Each request borrows keep-alive connections from a
/// pool of at most `connections` (shared out over the threads) and gives
/// them back once answered (see `target::ConnPool`).
///
/// The arrivals are shared out over one thread per core, each with its own
/// single-threaded runtime, pool and part of the in-flight bound, all on
/// one schedule (arrival `i` goes to thread `i mod threads`): on the CLI's
/// work-stealing runtime the wake-ups hopped between worker threads and
/// the generator fell behind its schedule near 27k arrivals/s.
///
/// The schedule starts once every thread is up and has opened its pool's
/// connections: started before, its first arrivals were already late by a
/// thread's start and the handshakes, and that lag (a few ms, every run)
/// counted in their latency from the intended send time.
pub async fn run(shared: Arc<Shared>, model: OpenModel, connections: usize) -> OpenRun {
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get()) as u64;
    let (ready_tx, mut ready) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (start, started) = tokio::sync::watch::channel::<Option<Instant>>(None);
    let mut parts = Vec::new();
    for index in 0..threads {
        let share = open::Share { index, of: threads };
        let (shared, ready_tx, mut started) = (shared.clone(), ready_tx.clone(), started.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("load-arrivals-{index}"))
            .spawn(move || {
                super::pace::yield_to_the_target();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(rt) => {
                        let part = rt.block_on(async move {
                            let pool = Arc::new(ConnPool::new(share.in_flight(connections)));
                            pool.warm(&shared.targets.authorities()).await;
                            let _ = ready_tx.send(());
                            drop(ready_tx);
                            let t0 = match started.wait_for(Option::is_some).await {
                                Ok(t0) => t0.expect("waited for Some"),
                                Err(_) => return OpenRun::default(),
                            };
                            run_share(shared, model, share, pool, t0).await
                        });
                        let _ = tx.send(part);
                    }
                    Err(e) => tracing::error!(error = %e, "no runtime for a load thread"),
                }
            });
        match spawned {
            Ok(_) => parts.push(rx),
            Err(e) => tracing::error!(error = %e, "load thread not started"),
        }
    }
    drop(ready_tx);
    // Every thread ready (or gone: its sender dropped with it).
    for _ in 0..parts.len() {
        if ready.recv().await.is_none() {
            break;
        }
    }
    let _ = start.send(Some(Instant::now()));
    let mut whole = OpenRun::default();
    for rx in parts {
        if let Ok(part) = rx.await {
            whole.merge(&part);
        }
    }
    whole
}

/// One thread's share of the arrivals, on `pool`.
async fn run_share(
    shared: Arc<Shared>,
    model: OpenModel,
    share: open::Share,
    pool: Arc<ConnPool>,
    t0: Instant,
) -> OpenRun {
    // Every share draws the scenario of every arrival in order (and uses
    // its own), so arrival i gets the same scenario however many share.
    let mut pick = StdRng::seed_from_u64(shared.seed);
    let mut drawn = 0u64;
    let labels: Arc<Vec<String>> = Arc::new(
        shared
            .plan
            .scenarios
            .iter()
            .map(|s| format!("pass: {}", s.name))
            .collect(),
    );
    open::drive_share(model, share, t0, Pace::precise(), move |i| {
        let mut s = shared.plan.pick_scenario(&mut pick);
        drawn += 1;
        while drawn <= i {
            s = shared.plan.pick_scenario(&mut pick);
            drawn += 1;
        }
        let intended = t0 + model.due(i);
        let (shared, pool, labels) = (shared.clone(), pool.clone(), labels.clone());
        async move {
            let ok = pass(&shared, &pool, s, i, intended).await;
            Done {
                label: labels[s].clone(),
                outcome: match ok {
                    Some(true) => "ok",
                    Some(false) => "failed",
                    None => "login failed",
                }
                .into(),
            }
        }
    })
    .await
}

/// One pass; `None` when a login failed (the pass ends unsent there).
async fn pass(
    shared: &Shared,
    pool: &ConnPool,
    s: usize,
    i: u64,
    intended: Instant,
) -> Option<bool> {
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
                None => return None,
            },
            None => None,
        };
        let mut conns = pool.take().await;
        let (ok, now) = closed::exchange(
            shared,
            &mut conns,
            ti,
            i as usize,
            &mut b,
            session.as_ref(),
            Some(due),
        )
        .await;
        drop(conns);
        all_ok &= ok;
        let think = shared.plan.think(b.rng());
        if think > Duration::ZERO {
            tokio::time::sleep(think).await;
        }
        due = now + think;
    }
    Some(all_ok)
}
