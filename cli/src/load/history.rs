//! `--history FILE`: every client operation of a load run as one JSON line
//! (invoke and complete times, scenario/transaction, method and path,
//! outcome, the idempotency key), so the run can be re-checked offline, as
//! Jepsen's histories are.
//!
//! Written off the hot path: a request hands its [`Op`] to a bounded
//! channel ([`History::record`], never blocking) and a writer thread
//! serialises and writes. When the channel is full the operation is not
//! written but counted ([`Written::dropped`]): the history is then
//! incomplete, and says so, rather than the load slowing down to wait for
//! a disk. With no `--history` the recorder holds `None`: nothing is built,
//! timed or sent.
//!
//! One line:
//! ```json
//! {"invoke_us":1764500000123456,"complete_us":1764500000125001,"scenario":"buyer",
//!  "tx":"order","method":"POST","path":"/checkout","outcome":{"status":201},
//!  "replayed":false,"key":"5f0c…"}
//! ```
//! Times are µs since the Unix epoch (the wall clock at invoke, plus the
//! monotonic duration for complete, so complete ≥ invoke always).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::sync::mpsc;

/// Operations waiting for the writer at most; beyond, they are dropped and
/// counted. At 20k req/s this is half a second of slack for a stalled disk,
/// and a few MB of memory at worst.
pub const CAPACITY: usize = 1 << 14;

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An answer with this status (body read to the end).
    Status(u16),
    /// No (whole) answer: `timeout`, `connect`, `other`, `login failed`.
    Error(String),
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Op {
    /// When the request was handed to the client, µs since the Unix epoch.
    pub invoke_us: u64,
    /// When the last body byte (or the error) came back.
    pub complete_us: u64,
    pub scenario: String,
    pub tx: String,
    pub method: &'static str,
    /// Path and query as sent (without scheme and host).
    pub path: String,
    pub outcome: Outcome,
    /// The server said it replayed a stored answer (`Idempotent-Replayed`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// The `Idempotency-Key` sent, if any (for checkout: the order's key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// `invoke_us` plus `took`: complete times derived from the monotonic clock.
pub fn after(invoke_us: u64, took: Duration) -> u64 {
    invoke_us.saturating_add(took.as_micros() as u64)
}

/// The path and query of `url` (`http://h:1/a?b` → `/a?b`).
pub fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

/// The sending side, cheap to clone: every user holds one.
#[derive(Clone)]
pub struct History {
    /// `None` is the writer's signal to finish.
    tx: mpsc::Sender<Option<Op>>,
    dropped: Arc<AtomicU64>,
}

impl History {
    /// Hands `op` to the writer, or counts it as dropped when the writer is
    /// behind. Never waits.
    pub fn record(&self, op: Op) {
        if self.tx.try_send(Some(op)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a finished history holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub path: PathBuf,
    /// Lines written.
    pub ops: u64,
    /// Operations not written because the writer was behind.
    pub dropped: u64,
}

impl Written {
    /// `12345 operations → FILE` (and the drops, if any), for the report.
    pub fn describe(&self) -> String {
        let mut s = format!("{} operations → {}", self.ops, self.path.display());
        if self.dropped > 0 {
            s.push_str(&format!(
                "; {} NOT written (the writer fell behind): the history is incomplete",
                self.dropped
            ));
        }
        s
    }
}

/// The file and its writer thread.
pub struct Writer {
    history: History,
    path: PathBuf,
    thread: std::thread::JoinHandle<std::io::Result<u64>>,
}

impl Writer {
    /// Creates (truncates) `path` and starts the writer thread.
    pub fn create(path: &Path) -> Result<Self> {
        Self::with_capacity(path, CAPACITY)
    }

    /// [`Writer::create`] with a channel of `capacity` operations.
    pub fn with_capacity(path: &Path, capacity: usize) -> Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("--history: cannot create {}", path.display()))?;
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("load-history".into())
            .spawn(move || write_all(rx, BufWriter::with_capacity(1 << 16, file)))
            .context("--history: cannot start the writer thread")?;
        Ok(Self {
            history: History {
                tx,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            path: path.to_owned(),
            thread,
        })
    }

    /// A sender for the users (clone it freely).
    pub fn history(&self) -> History {
        self.history.clone()
    }

    /// Writes every operation recorded so far, flushes and closes the
    /// file. Call it once the load is over: operations recorded afterwards
    /// (by a [`History`] clone still held somewhere) are not written.
    pub async fn finish(self) -> Result<Written> {
        let Writer {
            history,
            path,
            thread,
        } = self;
        // Behind every operation already queued; waits for room, if need be.
        let _ = history.tx.send(None).await;
        let dropped = history.dropped.clone();
        drop(history);
        let ops = tokio::task::spawn_blocking(move || thread.join())
            .await
            .context("--history: the writer thread was lost")?
            .map_err(|_| anyhow::anyhow!("--history: the writer thread panicked"))?
            .with_context(|| format!("--history: cannot write {}", path.display()))?;
        Ok(Written {
            path,
            ops,
            dropped: dropped.load(Ordering::Relaxed),
        })
    }
}

fn write_all(mut rx: mpsc::Receiver<Option<Op>>, mut out: impl Write) -> std::io::Result<u64> {
    let mut n = 0;
    while let Some(Some(op)) = rx.blocking_recv() {
        serde_json::to_writer(&mut out, &op)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(i: u64) -> Op {
        Op {
            invoke_us: 1_000 + i,
            complete_us: 2_000 + i,
            scenario: "buyer".into(),
            tx: "order".into(),
            method: "POST",
            path: "/checkout".into(),
            outcome: if i.is_multiple_of(2) {
                Outcome::Status(201)
            } else {
                Outcome::Error("timeout".into())
            },
            replayed: false,
            key: Some(format!("k{i}")),
        }
    }

    #[tokio::test]
    async fn every_operation_becomes_one_json_line_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let w = Writer::create(&path).unwrap();
        let h = w.history();
        for i in 0..100 {
            h.record(op(i));
        }
        // A clone still held (as the run's shared state holds one) does not
        // keep the file open.
        let written = w.finish().await.unwrap();
        h.record(op(100));
        assert_eq!((written.ops, written.dropped), (100, 0));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines[0]["outcome"]["status"], 201);
        assert_eq!(lines[1]["outcome"]["error"], "timeout");
        assert_eq!(lines[7]["key"], "k7");
        assert_eq!(lines[7]["invoke_us"], 1_007);
        assert!(lines[0].get("replayed").is_none(), "false is left out");
    }

    #[tokio::test]
    async fn a_writer_that_falls_behind_drops_and_counts_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        let w = Writer::with_capacity(&path, 4).unwrap();
        let h = w.history();
        // The writer thread may drain some meanwhile; whatever it did not
        // take is counted, and written + dropped is every operation.
        for i in 0..10_000 {
            h.record(op(i));
        }
        drop(h);
        let written = w.finish().await.unwrap();
        assert_eq!(written.ops + written.dropped, 10_000);
        assert!(written.dropped > 0, "10,000 ops into 4 slots: none dropped");
        assert!(written.describe().contains("NOT written"));
        let lines = std::fs::read_to_string(&path).unwrap().lines().count() as u64;
        assert_eq!(lines, written.ops);
    }

    #[test]
    fn the_path_is_what_follows_the_host() {
        assert_eq!(
            path_of("http://127.0.0.1:1/products/1?x=2"),
            "/products/1?x=2"
        );
        assert_eq!(path_of("http://h:1"), "/");
        assert_eq!(path_of("/a"), "/a");
    }
}
