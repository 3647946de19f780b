//! `storefront dashboard`: the lab page. A small axum server on 127.0.0.1
//! for the fleet in the state dir: the topology with each component's state
//! and rates, the experiments and loads (this binary run as a child, its
//! report drawn by the same HTML renderer as `--html`), chaos and the
//! control plane, an order's story. Every asset is embedded; nothing is
//! fetched from elsewhere. [`guard`] says who may talk to it.

mod api;
mod guard;
mod history;
mod metrics;
mod patterns;
mod runs;
mod snapshot;
mod story;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::sync::watch;

use crate::fleet::Ctx;
pub use guard::Guard;

/// Everything a handler needs.
pub struct App {
    pub guard: Guard,
    pub ctx: Arc<Ctx>,
    pub fleet: runs::Fleet,
    pub runs: runs::Runs,
    pub snapshot: watch::Receiver<Value>,
    pub patterns: Vec<patterns::Pattern>,
    /// Wakes the poller at once after an action, so its effect shows now.
    pub look_now: Arc<tokio::sync::Notify>,
    /// For the server's own calls (Prometheus's API).
    pub http: reqwest::Client,
}

/// How often the fleet is looked at (the page gets each look).
const TICK: Duration = Duration::from_millis(700);

/// Binds 127.0.0.1:`port` (0: any free port), prints the URL with its
/// token, and serves until Ctrl-C or SIGTERM.
pub async fn serve(ctx: Ctx, port: u16, port_base: Option<u16>, open: bool) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    let port = listener.local_addr()?.port();
    let token = crate::fleet::random_secret(32);
    let ctx = Arc::new(ctx);
    let (tx, rx) = watch::channel(Value::Null);
    let mut poller = snapshot::Poller::new(ctx.clone());
    let look_now = Arc::new(tokio::sync::Notify::new());
    let wake = look_now.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = wake.notified() => {}
            }
            if tx.send(poller.tick().await).is_err() {
                return;
            }
        }
    });
    let app = Arc::new(App {
        guard: Guard::new(token.clone(), port),
        fleet: runs::Fleet {
            state_dir: ctx.state_dir.clone(),
            port_base,
            fleet_profile: ctx.profile.name.clone(),
        },
        ctx,
        runs: runs::Runs::default(),
        snapshot: rx,
        patterns: patterns::all(),
        look_now,
        http: reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .context("HTTP client")?,
    });
    let url = format!("http://127.0.0.1:{port}/?token={token}");
    println!("dashboard: {url}");
    println!("(loopback only; the token in the URL is the key: Ctrl-C stops the dashboard)");
    if open
        && let Err(e) = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
    {
        eprintln!("could not open a browser ({e}): open the URL above");
    }
    // Not a graceful drain: the page's event streams never end by themselves.
    let runs = app.runs.clone();
    let served = tokio::select! {
        r = axum::serve(listener, api::router(app)) => r.context("the dashboard's server failed"),
        () = shutdown() => Ok(()),
    };
    // A run still going gets SIGTERM, as on Ctrl-C in a terminal, so it
    // lifts its faults and lock itself; after 15 s it is killed on drop.
    if runs.stop().is_ok() {
        eprintln!("stopping the run in progress…");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while runs.current().is_some_and(|r| r.running) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    served
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
