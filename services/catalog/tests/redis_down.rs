//! A dead or frozen Redis costs catalog requests at most a few milliseconds
//! (issue 12, defect a: every cache call used to stall 7–11 s).
//!
//! A test binary of its own: it runs a private `redis-server` (not the
//! shared test Redis, which other tests use) and freezes it with SIGSTOP or
//! kills it, as an operator or a fault schedule would.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use common::{TestApp, spawn_app_with};
use storefront_kit::testing::eventually;

/// The slowest a read may answer while Redis is down. The cache's own
/// budget is 250 ms for the one probe per second; the rest is Postgres and
/// a debug build's slack. Before the fix a frozen Redis cost 2 s per call
/// (the response timeout) and a dead one 6 s of reconnect backoff.
const BOUND: Duration = Duration::from_millis(700);
/// The slowest a write may answer: its invalidation may wait 500 ms.
const WRITE_BOUND: Duration = Duration::from_millis(1000);

/// A `redis-server` child on a free port, killed when dropped.
struct PrivateRedis {
    child: Child,
    url: String,
}

impl PrivateRedis {
    /// Starts one and waits (bounded) until it answers PING; `None` when
    /// there is no `redis-server` on PATH.
    async fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("skipped: no redis-server on PATH");
            return None;
        };
        let redis = Self {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        let client = redis::Client::open(redis.url.as_str()).unwrap();
        let up = eventually(Duration::from_secs(10), || async {
            let mut conn = client.get_multiplexed_async_connection().await.ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        })
        .await;
        assert!(up.is_some(), "private redis-server did not come up");
        Some(redis)
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`, `KILL`) to the server.
    fn signal(&self, signal: &str) {
        assert!(self.try_signal(signal), "kill -{signal} failed");
    }

    /// [`PrivateRedis::signal`] that reports instead of asserting.
    fn try_signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.try_signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A catalog whose L2 is `redis` and whose L1 forgets at once, so every
/// read asks Redis.
async fn catalog_on(redis: &PrivateRedis) -> Option<TestApp> {
    spawn_app_with(&[("REDIS_URL", redis.url.as_str()), ("CACHE_L1_TTL_MS", "1")]).await
}

/// Reads product 9 back to back for `window` (long enough to span the
/// circuit's probes); every read must be 200, and the slowest time is
/// returned.
async fn slowest_read(app: &TestApp, window: Duration) -> Duration {
    let mut slowest = Duration::ZERO;
    let until = Instant::now() + window;
    while Instant::now() < until {
        let started = Instant::now();
        let reply = app.product(9).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
    slowest
}

/// Patches product 9's stock and returns how long the write took.
async fn timed_write(app: &TestApp) -> Duration {
    let etag = app.product(9).await.etag();
    let started = Instant::now();
    let patched = app.patch(9, Some(&etag), json!({"stock_delta": 1})).await;
    let took = started.elapsed();
    assert_eq!(patched.status, StatusCode::OK, "{:?}", patched.body);
    took
}

#[tokio::test]
async fn reads_and_writes_answer_promptly_while_redis_is_frozen_and_l2_returns_after() {
    let Some(redis) = PrivateRedis::start().await else {
        return;
    };
    let Some(app) = catalog_on(&redis).await else {
        return;
    };
    app.product(9).await;
    let l2 = eventually(Duration::from_secs(5), || async {
        (app.product(9).await.header("x-cache") == "l2").then_some(())
    })
    .await;
    assert!(l2.is_some(), "L2 never served while Redis was up");

    redis.signal("STOP");
    // 2.5 s: past the first failure and at least one probe after it.
    let slowest = slowest_read(&app, Duration::from_millis(2500)).await;
    assert!(slowest < BOUND, "a read took {slowest:?} with Redis frozen");
    assert_ne!(app.product(9).await.header("x-cache"), "l2");
    let write = timed_write(&app).await;
    assert!(
        write < WRITE_BOUND,
        "a write took {write:?} with Redis frozen"
    );

    redis.signal("CONT");
    let back = eventually(Duration::from_secs(10), || async {
        (app.product(9).await.header("x-cache") == "l2").then_some(())
    })
    .await;
    assert!(back.is_some(), "L2 never came back after Redis resumed");
}

#[tokio::test]
async fn reads_and_writes_answer_promptly_after_redis_is_killed() {
    let Some(mut redis) = PrivateRedis::start().await else {
        return;
    };
    let Some(app) = catalog_on(&redis).await else {
        return;
    };
    app.product(9).await;
    redis.signal("KILL");
    let _ = redis.child.wait();

    let slowest = slowest_read(&app, Duration::from_millis(2500)).await;
    assert!(slowest < BOUND, "a read took {slowest:?} with Redis dead");
    let write = timed_write(&app).await;
    assert!(
        write < WRITE_BOUND,
        "a write took {write:?} with Redis dead"
    );
}
