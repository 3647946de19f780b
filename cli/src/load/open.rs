//! Open-model load: request i is due at `start + i / rate`, whether or not
//! earlier requests have answered, so a slow server cannot slow the arrivals
//! down (the closed-model trap that hides queueing: coordinated omission).
//! Latency is measured from the *intended* send time; the service time (from
//! the actual send) is recorded beside it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
// tokio's clock: real time at run time, steppable in tests (no sleeps there).
use tokio::time::Instant;

use super::pace::Pace;
use crate::run::{Latencies, Outcomes};

/// The arrival process.
#[derive(Debug, Clone, Copy)]
pub struct OpenModel {
    /// Requests per second.
    pub rate: f64,
    pub duration: Duration,
    /// Requests in flight at most; an arrival beyond it is not sent and is
    /// counted as `dropped: overload` (bounded memory, and a visible signal
    /// that the target or the generator is saturated).
    pub max_in_flight: usize,
}

impl OpenModel {
    /// Total arrivals the model schedules.
    pub fn arrivals(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).floor() as u64
    }

    /// When arrival `i` is due, from the start.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate)
    }
}

/// What one request reports back: its label (histogram/outcome key) and outcome.
pub struct Done {
    pub label: String,
    pub outcome: String,
}

/// What a run produced.
#[derive(Debug, Default)]
pub struct OpenRun {
    pub outcomes: Outcomes,
    /// `label` from intended send time; `label (service time)` from actual send.
    pub latencies: Latencies,
    pub sent: u64,
    pub dropped: u64,
    /// How late the driver sent, at worst (generator saturation shows here).
    pub max_send_lag: Duration,
    pub took: Duration,
}

/// A finished request on its way to the collector.
struct Finished {
    done: Done,
    from_intended: Duration,
    service: Duration,
    at: std::time::Instant,
}

/// Drives `make(i)` at the model's arrival rate; `make` builds the request
/// future for arrival `i`, which resolves to its label and outcome.
///
/// A collector task folds each answer into the histograms as it comes, so
/// memory holds what is in flight, not the whole run (the answers used to
/// wait in a channel until the last arrival was sent).
pub async fn drive<F, Fut>(model: OpenModel, make: F) -> OpenRun
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Done> + Send + 'static,
{
    let whole = Share { index: 0, of: 1 };
    drive_share(model, whole, Instant::now(), Pace::Ticks, make).await
}

/// Which of the arrivals one driver sends: those with `i % of == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub index: u64,
    pub of: u64,
}

impl Share {
    /// The in-flight bound of one share: its part of the whole, at least 1.
    pub fn in_flight(&self, total: usize) -> usize {
        total.div_ceil(self.of.max(1) as usize).max(1)
    }
}

/// [`drive`] for one share of the arrivals, timed from `start` (the same
/// for every share, so together they keep the model's schedule) and sent
/// when `pace` says they are due.
pub async fn drive_share<F, Fut>(
    model: OpenModel,
    share: Share,
    start: Instant,
    mut pace: Pace,
    mut make: F,
) -> OpenRun
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Done> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(share.in_flight(model.max_in_flight)));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Finished>();
    let collector = tokio::spawn(collect(rx));
    let (mut sent, mut dropped, mut max_send_lag) = (0u64, 0u64, Duration::ZERO);
    let mut drops = Outcomes::default();
    for i in (share.index..model.arrivals()).step_by(share.of.max(1) as usize) {
        let due = start + model.due(i);
        pace.until(due).await;
        let lag = Instant::now().saturating_duration_since(due);
        max_send_lag = max_send_lag.max(lag);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            dropped += 1;
            drops.add("all", "dropped: overload");
            continue;
        };
        sent += 1;
        // Boxed once here: the request future is kilobytes, and unboxed it
        // was copied into the task, into its cell and over again when the
        // task finished (memmove was 8.8 % of the generator's samples at
        // 30,000 arrivals/s, most of it these copies).
        let fut = Box::pin(make(i));
        let tx = tx.clone();
        tokio::spawn(async move {
            let sent_at = Instant::now();
            let done = fut.await;
            let now = Instant::now();
            drop(permit);
            let _ = tx.send(Finished {
                done,
                from_intended: now - due,
                service: now - sent_at,
                at: now.into_std(),
            });
        });
    }
    drop(tx);
    let (latencies, mut outcomes) = collector
        .await
        .expect("the collector only records: it cannot panic");
    outcomes.merge(&drops);
    OpenRun {
        outcomes,
        latencies,
        sent,
        dropped,
        max_send_lag,
        took: start.elapsed(),
    }
}

impl OpenRun {
    /// Adds another share's run to this one.
    pub fn merge(&mut self, other: &OpenRun) {
        self.outcomes.merge(&other.outcomes);
        self.latencies.merge(&other.latencies);
        self.sent += other.sent;
        self.dropped += other.dropped;
        self.max_send_lag = self.max_send_lag.max(other.max_send_lag);
        self.took = self.took.max(other.took);
    }
}

/// Folds answers into histograms until every sender is gone.
async fn collect(mut rx: tokio::sync::mpsc::UnboundedReceiver<Finished>) -> (Latencies, Outcomes) {
    let (mut latencies, mut outcomes) = (Latencies::default(), Outcomes::default());
    // `label (service time)`, built once per label rather than per answer.
    let mut service_labels: std::collections::HashMap<String, String> = Default::default();
    while let Some(f) = rx.recv().await {
        let service_label = service_labels
            .entry(f.done.label.clone())
            .or_insert_with(|| format!("{} (service time)", f.done.label));
        latencies.record_at(&f.done.label, f.from_intended, f.at);
        latencies.record_at(service_label, f.service, f.at);
        outcomes.add_at(&f.done.label, f.done.outcome, f.at);
    }
    (latencies, outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_are_evenly_spaced() {
        let m = OpenModel {
            rate: 200.0,
            duration: Duration::from_secs(2),
            max_in_flight: 10,
        };
        assert_eq!(m.arrivals(), 400);
        assert_eq!(m.due(100), Duration::from_millis(500));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_target_does_not_slow_arrivals_and_latency_counts_from_intent() {
        // 100 req/s for 1 s against a "server" that takes 300 ms: a closed
        // model would send a handful; the open model sends all 100.
        let m = OpenModel {
            rate: 100.0,
            duration: Duration::from_secs(1),
            max_in_flight: 1000,
        };
        let run = drive(m, |_| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Done {
                label: "get".into(),
                outcome: "200".into(),
            }
        })
        .await;
        assert_eq!(run.sent, 100);
        assert_eq!(run.outcomes.count("get", "200"), 100);
        let h = run.latencies.get("get").unwrap();
        assert!(
            h.min() >= 299_000,
            "latency from intended send includes the 300 ms service time (3 significant digits): min {} us",
            h.min()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shares_split_the_arrivals_between_them_and_merge_to_the_whole() {
        let m = OpenModel {
            rate: 100.0,
            duration: Duration::from_secs(1),
            max_in_flight: 1000,
        };
        let start = Instant::now();
        let mut whole = OpenRun::default();
        for index in 0..3 {
            let share = Share { index, of: 3 };
            let run = drive_share(m, share, start, Pace::Ticks, move |i| async move {
                assert_eq!(i % 3, index, "a share sends only its own arrivals");
                Done {
                    label: "get".into(),
                    outcome: "200".into(),
                }
            })
            .await;
            assert_eq!(run.sent, [34, 33, 33][index as usize]);
            whole.merge(&run);
        }
        assert_eq!(whole.sent, 100);
        assert_eq!(whole.outcomes.count("get", "200"), 100);
        assert_eq!(Share { index: 0, of: 2 }.in_flight(64), 32);
        assert_eq!(Share { index: 0, of: 3 }.in_flight(1), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn arrivals_beyond_the_in_flight_bound_are_dropped_and_counted() {
        let m = OpenModel {
            rate: 100.0,
            duration: Duration::from_secs(1),
            max_in_flight: 10,
        };
        let run = drive(m, |_| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Done {
                label: "get".into(),
                outcome: "200".into(),
            }
        })
        .await;
        assert_eq!(run.sent, 10);
        assert_eq!(run.dropped, 90);
        assert_eq!(run.outcomes.count("all", "dropped: overload"), 90);
    }
}
