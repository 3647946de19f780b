//! One replica: its breaker, its exact counters, and the ticket a request
//! holds while it is in flight there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use axum::http::HeaderValue;
use metrics::Counter;
use serde::Serialize;

use crate::breaker::{Admission, Breaker, State, Transition, View};

use super::{ATTEMPTS_METRIC, SENT_METRIC, STATE_METRIC, TRANSITIONS_METRIC, Verdict};

/// Exact per-instance counts, for `GET /admin/breakers` (the experiments
/// read these; `/metrics` has the same as Prometheus counters).
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) sent_calls: AtomicU64,
    pub(super) sent_probes: AtomicU64,
    pub(super) successes: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) injected: AtomicU64,
    pub(super) opened: AtomicU64,
}

/// The counters as reported.
#[derive(Debug, Clone, Serialize)]
pub struct CountersView {
    /// Requests sent to the instance while its breaker was closed.
    pub sent_calls: u64,
    /// Requests sent to it as half-open probes.
    pub sent_probes: u64,
    /// Attempts that succeeded ([`Verdict::Healthy`]: any status below 500).
    pub successes: u64,
    /// Attempts that failed ([`Verdict::Faulty`]: 5xx, connect error,
    /// timeout, injected fault).
    pub failures: u64,
    /// Attempts refused by the open breaker, never sent.
    pub rejected: u64,
    /// Attempts answered by an injected error or abort, never sent.
    pub injected: u64,
    /// Times the breaker opened.
    pub opened: u64,
}

/// One replica of an upstream service.
#[derive(Debug)]
pub struct Instance {
    /// `catalog`.
    pub service: String,
    /// `catalog-2`: the fleet's instance name, also the metrics label.
    pub name: String,
    /// `http://127.0.0.1:47111`.
    pub base: String,
    pub(super) breaker: Mutex<Breaker>,
    pub(super) counters: Counters,
    pub(super) handles: Handles,
}

/// The Prometheus series every forwarded request adds to, looked up once,
/// on first use (the recorder is installed by then): `counter!` with the
/// instance's name as a label clones the name, hashes the key and looks it
/// up in the registry on every call.
#[derive(Debug, Default)]
pub(super) struct Handles {
    sent_call: OnceLock<Counter>,
    attempt_ok: OnceLock<Counter>,
    /// The name as the `X-Upstream` value of every response.
    header: OnceLock<Option<HeaderValue>>,
}

/// An instance as `GET /admin/breakers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    /// The routed service's name (`catalog`).
    pub service: String,
    /// The instance's name (`catalog-1`).
    pub instance: String,
    /// Its base URL.
    pub url: String,
    /// Its breaker's state and figures.
    #[serde(flatten)]
    pub breaker: View,
    /// Its attempt counters.
    pub counters: CountersView,
}

impl Instance {
    /// The instance's name as a header value (`X-Upstream`); `None` if the
    /// name is not a valid one.
    pub fn header_value(&self) -> Option<&HeaderValue> {
        self.handles
            .header
            .get_or_init(|| HeaderValue::from_str(&self.name).ok())
            .as_ref()
    }

    pub(super) fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn note(&self, transition: Option<Transition>) {
        let Some(t) = transition else { return };
        if t.to == State::Open {
            self.counters.opened.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(upstream = %self.name, from = t.from.as_str(), to = t.to.as_str(), "breaker transition");
        metrics::counter!(TRANSITIONS_METRIC, "upstream" => self.name.clone(), "from" => t.from.as_str(), "to" => t.to.as_str()).increment(1);
        metrics::gauge!(STATE_METRIC, "upstream" => self.name.clone()).set(t.to.gauge());
    }

    pub(super) fn count(&self, outcome: &'static str) {
        let series = || metrics::counter!(ATTEMPTS_METRIC, "upstream" => self.name.clone(), "outcome" => outcome);
        match outcome {
            "ok" => self.handles.attempt_ok.get_or_init(series).increment(1),
            _ => series().increment(1),
        }
    }

    /// The snapshot at `now`.
    pub fn view(&self, now: Instant) -> InstanceView {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        InstanceView {
            service: self.service.clone(),
            instance: self.name.clone(),
            url: self.base.clone(),
            breaker: self.breaker().view(now),
            counters: CountersView {
                sent_calls: get(&c.sent_calls),
                sent_probes: get(&c.sent_probes),
                successes: get(&c.successes),
                failures: get(&c.failures),
                rejected: get(&c.rejected),
                injected: get(&c.injected),
                opened: get(&c.opened),
            },
        }
    }
}

/// Permission to call one instance, from its breaker. Settle it with the
/// outcome; dropped unsettled (the client went away) it frees its probe slot.
#[derive(Debug)]
pub struct Ticket {
    /// The instance this ticket admits a call to.
    pub instance: Arc<Instance>,
    pub(super) admission: Admission,
    pub(super) settled: bool,
}

impl Ticket {
    /// Reports the attempt's verdict to the breaker; [`Verdict::NotJudged`]
    /// only frees the ticket's slot.
    pub fn settle(mut self, verdict: Verdict) {
        let ok = match verdict {
            Verdict::Healthy => true,
            Verdict::Faulty => false,
            Verdict::NotJudged => return,
        };
        self.settled = true;
        let counter = if ok {
            &self.instance.counters.successes
        } else {
            &self.instance.counters.failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let t = self
            .instance
            .breaker()
            .record(self.admission, ok, Instant::now());
        self.instance.note(t);
    }

    pub(super) fn mark_sent(&self) {
        let (counter, label) = match self.admission {
            Admission::Probe => (&self.instance.counters.sent_probes, "probe"),
            _ => (&self.instance.counters.sent_calls, "call"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let series = || metrics::counter!(SENT_METRIC, "upstream" => self.instance.name.clone(), "admitted_as" => label);
        match self.admission {
            Admission::Probe => series().increment(1),
            _ => self
                .instance
                .handles
                .sent_call
                .get_or_init(series)
                .increment(1),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            self.instance.breaker().release(self.admission);
        }
    }
}
