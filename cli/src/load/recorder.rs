//! Every request's exact latency and outcome, per transaction. Each thread
//! records into a shard of its own (a runtime worker always takes the same
//! one), so its lock is never contended and its histograms stay in that
//! core's cache; the shards merge once at the end. There are a few shards,
//! not one per user: each holds full histograms and a per-second timeline,
//! and 32 copies of those were most of the generator's memory. Two atomic
//! counters feed the live progress line. With `--history` the recorder also
//! holds the history's sender (`history()`), `None` otherwise.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::history::History;
use crate::run::Seconds;
use crate::run::hdr::{histogram, micros};

/// Shards at most, whatever is asked: twice the cores, at least 4.
fn max_shards() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (2 * n.get()).max(4))
}

/// This thread's slot: threads are numbered in the order they first record.
fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed));
    SLOT.with(|s| *s)
}

/// One transaction's record.
#[derive(Debug, Clone)]
pub struct TxTally {
    /// Each request's own latency (send to last body byte), in µs.
    pub raw: Histogram<u64>,
    /// Open model: latency from the intended send time. Closed model: empty
    /// until the run ends, then derived from `raw` (see `closed::correct`).
    pub corrected: Histogram<u64>,
    /// Latencies of the requests that failed (their count is the error count).
    pub failed: Histogram<u64>,
    /// Exact count per status (`200`) or error kind (`error: connect`).
    pub outcomes: BTreeMap<String, u64>,
    /// Per second since the load began (by answer time): requests, errors,
    /// latencies. Empty when merged from interval logs.
    pub seconds: Seconds,
}

impl Default for TxTally {
    fn default() -> Self {
        Self {
            raw: histogram(),
            corrected: histogram(),
            failed: histogram(),
            outcomes: BTreeMap::new(),
            seconds: Seconds::default(),
        }
    }
}

impl TxTally {
    pub fn merge(&mut self, o: &TxTally) {
        self.raw.add(&o.raw).expect("same bounds");
        self.corrected.add(&o.corrected).expect("same bounds");
        self.failed.add(&o.failed).expect("same bounds");
        self.seconds.merge(&o.seconds);
        for (k, v) in &o.outcomes {
            *self.outcomes.entry(k.clone()).or_default() += v;
        }
    }

    pub fn count(&self) -> u64 {
        self.raw.len()
    }

    pub fn errors(&self) -> u64 {
        self.failed.len()
    }
}

/// What one request left behind.
pub struct Sample<'a> {
    pub tx: usize,
    pub raw: Duration,
    /// From the intended send time (open model only).
    pub corrected: Option<Duration>,
    pub outcome: &'a str,
    pub ok: bool,
}

pub struct Recorder {
    /// Lazily filled: a shard holds only the transactions its threads recorded.
    shards: Vec<Mutex<Vec<Option<TxTally>>>>,
    /// `--history`: where every operation goes as well (`None`: off, free).
    history: Option<History>,
    transactions: usize,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Rates are per second of the window from the first send to the last
    /// answer (µs since `epoch`), whatever the ramp and shutdown took.
    epoch: Instant,
    first_send: AtomicU64,
    last_answer: AtomicU64,
}

impl Recorder {
    /// `shards` is an upper bound (it is capped at twice the cores).
    pub fn new(transactions: usize, shards: usize) -> Self {
        Self {
            shards: (0..shards.clamp(1, max_shards()))
                .map(|_| Mutex::new(vec![None; transactions]))
                .collect(),
            history: None,
            transactions,
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            epoch: Instant::now(),
            first_send: AtomicU64::new(u64::MAX),
            last_answer: AtomicU64::new(0),
        }
    }

    /// Also writes every operation to `history` (`--history FILE`: see
    /// `load::history::Writer`).
    #[must_use]
    pub fn with_history(mut self, history: Option<History>) -> Self {
        self.history = history;
        self
    }

    /// The history's sender when `--history` is on: callers build an
    /// `Op` only then.
    pub fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    /// From the first request sent to the last answer received.
    pub fn window(&self) -> Duration {
        let (a, b) = (
            self.first_send.load(Ordering::Relaxed),
            self.last_answer.load(Ordering::Relaxed),
        );
        Duration::from_micros(b.saturating_sub(a))
    }

    /// Records one request. `_user` is who sent it; the shard is chosen by
    /// the recording thread, not by the user (see the module docs).
    pub fn record(&self, _user: usize, s: Sample<'_>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let now = self.epoch.elapsed();
        self.last_answer
            .fetch_max(now.as_micros() as u64, Ordering::Relaxed);
        self.first_send.fetch_min(
            now.saturating_sub(s.raw).as_micros() as u64,
            Ordering::Relaxed,
        );
        if !s.ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut g = self.shards[thread_slot() % self.shards.len()]
            .lock()
            .expect("a recorder shard is never poisoned: recording cannot panic");
        let t = g[s.tx].get_or_insert_with(TxTally::default);
        let raw = micros(s.raw);
        t.raw.record(raw).expect("clamped");
        let corrected = s.corrected.map(micros);
        if let Some(c) = corrected {
            t.corrected.record(c).expect("clamped");
        }
        let second = now.as_secs();
        t.seconds.count(second, !s.ok);
        t.seconds.latency(second, raw, corrected);
        if !s.ok {
            t.failed.record(raw).expect("clamped");
        }
        match t.outcomes.get_mut(s.outcome) {
            Some(n) => *n += 1,
            None => {
                t.outcomes.insert(s.outcome.to_owned(), 1);
            }
        }
    }

    /// Merges the shards: one tally per transaction, in plan order.
    pub fn finish(&self) -> Vec<TxTally> {
        let mut out = vec![TxTally::default(); self.transactions];
        for shard in &self.shards {
            let g = shard.lock().expect("not poisoned");
            for (i, t) in g.iter().enumerate() {
                if let Some(t) = t {
                    out[i].merge(t);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_recording_at_once_lose_nothing_and_shards_are_capped() {
        let r = Recorder::new(1, 1_000);
        assert!(r.shards.len() <= max_shards());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..1_000u64 {
                        r.record(
                            0,
                            Sample {
                                tx: 0,
                                raw: Duration::from_micros(1 + i),
                                corrected: None,
                                outcome: "200",
                                ok: true,
                            },
                        );
                    }
                });
            }
        });
        let t = r.finish();
        assert_eq!(t[0].count(), 8_000);
        assert_eq!(t[0].outcomes["200"], 8_000);
    }

    #[test]
    fn shards_merge_into_exact_counts_per_transaction() {
        let r = Recorder::new(2, 4);
        for i in 0..100u64 {
            let ok = i % 10 != 0;
            r.record(
                i as usize,
                Sample {
                    tx: (i % 2) as usize,
                    raw: Duration::from_micros(100 + i),
                    corrected: None,
                    outcome: if ok { "200" } else { "error: connect" },
                    ok,
                },
            );
        }
        let t = r.finish();
        assert_eq!(t[0].count() + t[1].count(), 100);
        assert_eq!(t[0].count(), 50);
        assert_eq!(t[0].errors() + t[1].errors(), 10);
        assert_eq!(t[0].outcomes["error: connect"], 10);
        assert_eq!(r.requests.load(Ordering::Relaxed), 100);
        assert_eq!(r.errors.load(Ordering::Relaxed), 10);
        assert!(t[0].corrected.is_empty());
        // The per-second buckets hold the same requests and errors.
        let (mut n, mut e) = (0, 0);
        for tx in &t {
            for s in tx.seconds.timeline(0).seconds {
                n += s.requests;
                e += s.errors;
            }
        }
        assert_eq!((n, e), (100, 10));
    }
}
