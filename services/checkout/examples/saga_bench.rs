//! Measures the saga pipeline on a running fleet: completed sagas per
//! second at a fixed number of sagas in flight (a closed loop: a worker
//! places an order, waits for it to finish, places the next), Postgres
//! commits per completed saga (`pg_stat_database.xact_commit` delta, minus
//! this tool's own queries) and the end-to-end latency each saga recorded
//! (`finished_at - created_at`, the timestamps `storefront saga` reports).
//!
//! ```text
//! cargo run -p storefront-checkout --example saga_bench -- \
//!     --state-dir /tmp/sf-dev --concurrency 64 --seconds 20
//! ```
//!
//! Every order uses the approve card on fixture products of its own (stock
//! ample), so every saga should complete; a saga that ends otherwise is
//! counted and printed. Reads the fleet's `fleet.json` for the admin
//! Postgres URL and checkout's address; sends only to 127.0.0.1.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::{Mutex, oneshot};
use uuid::Uuid;

/// How often the watcher asks Postgres which sagas finished.
const WATCH_EVERY: Duration = Duration::from_millis(10);

struct Args {
    state_dir: String,
    concurrency: usize,
    seconds: u64,
    warmup: u64,
}

fn args() -> Args {
    let mut a = Args {
        state_dir: "/tmp/sf-dev".into(),
        concurrency: 64,
        seconds: 20,
        warmup: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--state-dir" => a.state_dir = value,
            "--concurrency" => a.concurrency = value.parse().expect("--concurrency N"),
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            "--warmup" => a.warmup = value.parse().expect("--warmup N"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Orders waiting to finish: order id → who waits.
type Waiting = Arc<Mutex<HashMap<Uuid, oneshot::Sender<String>>>>;

/// CPU seconds (user + system) used so far by `pid` and its descendants,
/// from /proc (Linux).
fn cpu_secs(pid: u32) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut own: HashMap<u32, f64> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state ppid ... utime(14) stime(15).
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (Some(ppid), Some(u), Some(s)) = (
            f.get(1).and_then(|v| v.parse::<u32>().ok()),
            f.get(11).and_then(|v| v.parse::<f64>().ok()),
            f.get(12).and_then(|v| v.parse::<f64>().ok()),
        ) else {
            continue;
        };
        children.entry(ppid).or_default().push(p);
        own.insert(p, (u + s) / ticks);
    }
    let mut total = 0.0;
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        total += own.get(&p).copied().unwrap_or(0.0);
        stack.extend(children.get(&p).into_iter().flatten());
    }
    total
}

/// CPU seconds of every fleet component by name.
fn fleet_cpu(components: &[(String, u32)]) -> Vec<(String, f64)> {
    components
        .iter()
        .map(|(name, pid)| (name.clone(), cpu_secs(*pid)))
        .collect()
}

async fn commits(pg: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pg)
    .await
    .expect("pg_stat_database")
}

#[tokio::main]
async fn main() {
    let a = args();
    let fleet: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/fleet.json", a.state_dir)).expect("fleet.json"),
    )
    .expect("fleet.json is JSON");
    let pg_url = fleet["endpoints"]["postgres_admin_url"]
        .as_str()
        .expect("postgres_admin_url");
    let checkout = fleet["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "checkout")
        .and_then(|c| c["url"].as_str())
        .expect("checkout in fleet.json")
        .to_owned();
    assert!(checkout.starts_with("http://127.0.0.1:"), "{checkout}");
    let components: Vec<(String, u32)> = fleet["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| Some((c["name"].as_str()?.to_owned(), c["pid"].as_u64()? as u32)))
        .filter(|(name, _)| {
            [
                "postgres",
                "rabbitmq",
                "checkout",
                "payments",
                "catalog-1",
                "catalog-2",
            ]
            .contains(&name.as_str())
        })
        .collect();
    let pg = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(pg_url)
        .await
        .expect("postgres");
    let run = Uuid::new_v4().simple().to_string();
    let mut products = Vec::new();
    for i in 0..8 {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO catalog.products (sku, name, description, category, price_cents, stock) \
             VALUES ($1, 'Bench fixture', 'saga_bench', 'lab', 990, 10000000) RETURNING id",
        )
        .bind(format!("BENCH-{run}-{i}"))
        .fetch_one(&pg)
        .await
        .expect("fixture product");
        products.push(id);
    }

    let waiting: Waiting = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let own_queries = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (pg, waiting, stop, own) = (
            pg.clone(),
            waiting.clone(),
            stop.clone(),
            own_queries.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(WATCH_EVERY).await;
                let ids: Vec<Uuid> = waiting.lock().await.keys().copied().collect();
                if ids.is_empty() {
                    continue;
                }
                own.fetch_add(1, Ordering::Relaxed);
                let done: Vec<(Uuid, String)> = sqlx::query_as(
                    "SELECT order_id, state FROM checkout.sagas \
                     WHERE order_id = ANY($1) AND finished_at IS NOT NULL",
                )
                .bind(&ids)
                .fetch_all(&pg)
                .await
                .unwrap_or_default();
                let mut w = waiting.lock().await;
                for (id, state) in done {
                    if let Some(tx) = w.remove(&id) {
                        let _ = tx.send(state);
                    }
                }
            }
        })
    };

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let started = Instant::now();
    let measure_from = started + Duration::from_secs(a.warmup);
    let end = measure_from + Duration::from_secs(a.seconds);
    let finished = Arc::new(Mutex::new(Vec::<(Uuid, String, Instant)>::new()));
    let mut workers = Vec::new();
    for w in 0..a.concurrency {
        let (http, checkout, waiting, finished, products) = (
            http.clone(),
            checkout.clone(),
            waiting.clone(),
            finished.clone(),
            products.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while Instant::now() < end {
                n += 1;
                let product = products[(w + n) % products.len()];
                let body = json!({"items": [{"product_id": product, "quantity": 1}],
                    "card_number": "4242424242424242", "provider": if n.is_multiple_of(2) { "stripe" } else { "paypal" }});
                let (tx, rx) = oneshot::channel();
                let response = http
                    .post(format!("{checkout}/checkout"))
                    .header("idempotency-key", Uuid::new_v4().to_string())
                    .json(&body)
                    .send()
                    .await;
                let order_id = match response {
                    Ok(r) if r.status().as_u16() == 202 => {
                        let v: Value = r.json().await.unwrap_or_default();
                        v["order_id"].as_str().and_then(|s| s.parse::<Uuid>().ok())
                    }
                    Ok(r) => {
                        eprintln!("checkout answered {}", r.status());
                        None
                    }
                    Err(e) => {
                        eprintln!("checkout: {e}");
                        None
                    }
                };
                let Some(order_id) = order_id else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                waiting.lock().await.insert(order_id, tx);
                match tokio::time::timeout(Duration::from_secs(60), rx).await {
                    Ok(Ok(state)) => finished.lock().await.push((order_id, state, Instant::now())),
                    _ => eprintln!("order {order_id} did not finish within 60 s"),
                }
            }
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let commits_before = commits(&pg).await;
    let own_before = own_queries.load(Ordering::Relaxed);
    let done_before = finished.lock().await.len();
    let cpu_before = fleet_cpu(&components);
    tokio::time::sleep_until(end.into()).await;
    let commits_after = commits(&pg).await;
    let cpu_after = fleet_cpu(&components);
    let own_after = own_queries.load(Ordering::Relaxed);
    let window: Vec<(Uuid, String, Instant)> = finished.lock().await[done_before..].to_vec();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    for w in workers {
        w.await.ok();
    }
    stop.store(true, Ordering::Relaxed);
    watcher.await.ok();

    let completed = window.iter().filter(|(_, s, _)| s == "completed").count();
    let other = window.len() - completed;
    // Own queries in the window: the watcher's polls, plus the one read of
    // xact_commit itself (counted by the second read).
    let own = (own_after - own_before) as i64 + 1;
    let delta = commits_after - commits_before - own;
    let ids: Vec<Uuid> = window.iter().map(|(id, _, _)| *id).collect();
    let mut latencies: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM finished_at - created_at)::float8 FROM checkout.sagas \
         WHERE order_id = ANY($1) AND state = 'completed'",
    )
    .bind(&ids)
    .fetch_all(&pg)
    .await
    .unwrap();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        latencies[((latencies.len() as f64 - 1.0) * p).round() as usize] * 1000.0
    };
    println!(
        "concurrency {} window {} s: completed {completed} ({:.1}/s), other {other}; \
         commits {delta} ({:.2} per completed saga); end-to-end ms p50 {:.0} p90 {:.0} p99 {:.0}; \
         loadavg {}",
        a.concurrency,
        a.seconds,
        completed as f64 / a.seconds as f64,
        delta as f64 / completed.max(1) as f64,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let per_saga: Vec<String> = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|((name, b), (_, a))| {
            format!("{name} {:.2}", (a - b) * 1000.0 / completed.max(1) as f64)
        })
        .collect();
    println!("CPU ms per completed saga: {}", per_saga.join(", "));
}
