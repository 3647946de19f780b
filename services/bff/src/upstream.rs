//! The upstream replicas: each with its own breaker and counters, chosen
//! round-robin among those whose breaker admits a call, and the one attempt
//! of sending a request to one of them (chaos included).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use serde::Serialize;

use crate::breaker::{Admission, Breaker, BreakerConfig, State, Transition, View};
use crate::chaos::{Action, Chaos};
use crate::config::UpstreamConfig;

/// Counter of attempts per upstream instance, labelled `outcome`.
pub const ATTEMPTS_METRIC: &str = "bff_upstream_requests_total";
/// Counter of requests actually sent to an instance, labelled `admitted_as`
/// (`call` or `probe`): what the instance itself should have received.
pub const SENT_METRIC: &str = "bff_upstream_sent_total";
/// Counter of breaker transitions, labelled `from` and `to`.
pub const TRANSITIONS_METRIC: &str = "bff_breaker_transitions_total";
/// Gauge of each breaker's state: 0 closed, 1 open, 2 half-open.
pub const STATE_METRIC: &str = "bff_breaker_state";

/// Exact per-instance counts, for `GET /admin/breakers` (the experiments
/// read these; `/metrics` has the same as Prometheus counters).
#[derive(Debug, Default)]
struct Counters {
    sent_calls: AtomicU64,
    sent_probes: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    rejected: AtomicU64,
    injected: AtomicU64,
    opened: AtomicU64,
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
    breaker: Mutex<Breaker>,
    counters: Counters,
}

/// An instance as `GET /admin/breakers` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub service: String,
    pub instance: String,
    pub url: String,
    #[serde(flatten)]
    pub breaker: View,
    pub counters: CountersView,
}

impl Instance {
    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn note(&self, transition: Option<Transition>) {
        let Some(t) = transition else { return };
        if t.to == State::Open {
            self.counters.opened.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(upstream = %self.name, from = t.from.as_str(), to = t.to.as_str(), "breaker transition");
        metrics::counter!(TRANSITIONS_METRIC, "upstream" => self.name.clone(), "from" => t.from.as_str(), "to" => t.to.as_str()).increment(1);
        metrics::gauge!(STATE_METRIC, "upstream" => self.name.clone()).set(t.to.gauge());
    }

    fn count(&self, outcome: &'static str) {
        metrics::counter!(ATTEMPTS_METRIC, "upstream" => self.name.clone(), "outcome" => outcome)
            .increment(1);
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
    pub instance: Arc<Instance>,
    admission: Admission,
    settled: bool,
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

    fn mark_sent(&self) {
        let (counter, label) = match self.admission {
            Admission::Probe => (&self.instance.counters.sent_probes, "probe"),
            _ => (&self.instance.counters.sent_calls, "call"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(SENT_METRIC, "upstream" => self.instance.name.clone(), "admitted_as" => label)
            .increment(1);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            self.instance.breaker().release(self.admission);
        }
    }
}

/// One routed service and its replicas.
#[derive(Debug)]
pub struct Service {
    pub name: String,
    pub instances: Vec<Arc<Instance>>,
    /// Round-robin cursor.
    next: AtomicUsize,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Service {
    /// The service from its configuration; instances are named as the fleet
    /// names them (`catalog` for one replica, `catalog-1`… for more).
    pub fn new(config: &UpstreamConfig, breaker: BreakerConfig, now: Instant) -> Self {
        let n = config.urls.len();
        let instances = config
            .urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let name = if n == 1 {
                    config.service.clone()
                } else {
                    format!("{}-{}", config.service, i + 1)
                };
                metrics::gauge!(STATE_METRIC, "upstream" => name.clone()).set(0.0);
                Arc::new(Instance {
                    service: config.service.clone(),
                    name,
                    base: url.clone(),
                    breaker: Mutex::new(Breaker::new(breaker, now)),
                    counters: Counters::default(),
                })
            })
            .collect();
        Self {
            name: config.service.clone(),
            instances,
            next: AtomicUsize::new(0),
            timeout: config.timeout,
        }
    }

    /// The next instance in round-robin order whose breaker admits a call,
    /// preferring those not in `tried`; `Err` carries the shortest time
    /// until one will (every breaker refused).
    pub fn admit(&self, tried: &[usize], now: Instant) -> Result<(usize, Ticket), Duration> {
        let n = self.instances.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let order = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| !tried.contains(i))
            .chain(
                (0..n)
                    .map(|k| (start + k) % n)
                    .filter(|i| tried.contains(i)),
            );
        let mut soonest = Duration::MAX;
        for i in order {
            match self.admit_one(i, now) {
                Ok(ticket) => return Ok((i, ticket)),
                Err(wait) => soonest = soonest.min(wait),
            }
        }
        Err(soonest)
    }

    /// Asks instance `i`'s breaker alone.
    pub fn admit_one(&self, i: usize, now: Instant) -> Result<Ticket, Duration> {
        let instance = &self.instances[i];
        let (admission, t) = instance.breaker().admit(now);
        instance.note(t);
        match admission {
            Admission::Reject { retry_after } => {
                instance.counters.rejected.fetch_add(1, Ordering::Relaxed);
                instance.count("rejected_open");
                Err(retry_after)
            }
            _ => Ok(Ticket {
                instance: instance.clone(),
                admission,
                settled: false,
            }),
        }
    }

    /// The index of the instance named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.instances.iter().position(|i| i.name == name)
    }
}

/// A request as forwarded: everything needed to send it again on a retry.
#[derive(Debug, Clone)]
pub struct Forward {
    pub method: Method,
    /// `/products/7?x=1`: the path after `/api/<service>`, with the query.
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An upstream's answer, whatever its status.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Produced by chaos, not by the upstream.
    pub injected: bool,
}

/// How an attempt ended without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Connect,
    Timeout,
    /// Reset mid-way, or an injected abort.
    Aborted,
    /// The request could not be built (the BFF's fault; never sent).
    Local,
}

/// One attempt's result.
#[derive(Debug)]
pub enum Attempt {
    Reply(Reply),
    Failed(Transport),
}

/// What an attempt says about the upstream instance: only its own faults
/// may count against its breaker or earn a retry, so a client cannot open
/// a breaker (and deny everyone the service) by sending bad requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered, whatever the answer: any status below 500 (a 404, 412
    /// or 422 is the upstream working correctly on a request that was
    /// wrong), and 501/505, which describe the request, not the server.
    Healthy,
    /// It failed: no connection, no answer in time, a connection cut
    /// mid-way, or any other 5xx. A 5xx counts because the request reached
    /// it well-formed: the BFF forwards only paths it has parsed and
    /// checked, and the kit's edge (in front of the BFF and of every
    /// service) refuses NUL bytes and unreadable bodies before this.
    Faulty,
    /// The BFF could not build the request: its own fault, not the
    /// upstream's; the breaker is told nothing.
    NotJudged,
}

impl Attempt {
    /// The attempt's [`Verdict`].
    pub fn verdict(&self) -> Verdict {
        match self {
            Self::Reply(r) if !r.status.is_server_error() => Verdict::Healthy,
            Self::Reply(r) if matches!(r.status.as_u16(), 501 | 505) => Verdict::Healthy,
            Self::Reply(_) => Verdict::Faulty,
            Self::Failed(Transport::Local) => Verdict::NotJudged,
            Self::Failed(_) => Verdict::Faulty,
        }
    }

    /// Whether another replica might do better: transport failures and the
    /// statuses that mean "not now" or "not me" (502, 503, 504). Not a 500:
    /// that is the replica's answer to this very request, which another
    /// replica runs through the same code; retrying it would multiply a
    /// poisoned request by the attempts. Never a 4xx.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Reply(r) => matches!(r.status.as_u16(), 502..=504),
            Self::Failed(t) => *t != Transport::Local,
        }
    }
}

/// Sends `forward` to the ticket's instance, after whatever chaos says.
/// The timeout covers the injected latency too: a slow upstream is slow
/// whichever way it got slow.
pub async fn send(
    client: &reqwest::Client,
    chaos: &Mutex<Chaos>,
    ticket: &Ticket,
    timeout: Duration,
    forward: &Forward,
) -> Attempt {
    let instance = &ticket.instance;
    let plan = chaos.lock().unwrap_or_else(PoisonError::into_inner).plan(
        &instance.service,
        &instance.name,
        Instant::now(),
    );
    let attempt = tokio::time::timeout(timeout, async {
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
        match plan.action {
            Action::Error(status) => Attempt::Reply(injected_reply(status)),
            Action::Abort => Attempt::Failed(Transport::Aborted),
            Action::Pass => {
                ticket.mark_sent();
                call(client, &instance.base, forward).await
            }
        }
    })
    .await
    .unwrap_or(Attempt::Failed(Transport::Timeout));
    let injected = plan.action != Action::Pass;
    if injected {
        instance.counters.injected.fetch_add(1, Ordering::Relaxed);
    }
    instance.count(match (&attempt, injected) {
        (Attempt::Failed(Transport::Timeout), _) => "timeout",
        (_, true) if matches!(plan.action, Action::Abort) => "injected_abort",
        (_, true) => "injected_error",
        (Attempt::Reply(r), false) if r.status.is_server_error() => "http_5xx",
        (Attempt::Reply(_), false) => "ok",
        (Attempt::Failed(Transport::Connect), false) => "connect",
        (Attempt::Failed(Transport::Local), false) => "not_sent",
        (Attempt::Failed(_), false) => "aborted",
    });
    attempt
}

async fn call(client: &reqwest::Client, base: &str, forward: &Forward) -> Attempt {
    let url = format!("{base}{}", forward.path_and_query);
    let sent = client
        .request(forward.method.clone(), url)
        .headers(forward.headers.clone())
        .headers(storefront_kit::telemetry::trace_headers())
        .body(forward.body.clone())
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) => return Attempt::Failed(classify(&e)),
    };
    let status = response.status();
    let headers = response.headers().clone();
    match response.bytes().await {
        Ok(body) => Attempt::Reply(Reply {
            status,
            headers,
            body,
            injected: false,
        }),
        Err(e) => Attempt::Failed(classify(&e)),
    }
}

fn classify(e: &reqwest::Error) -> Transport {
    if e.is_builder() {
        tracing::error!(error = %e, "cannot build the upstream request");
        Transport::Local
    } else if e.is_timeout() {
        Transport::Timeout
    } else if e.is_connect() {
        Transport::Connect
    } else {
        Transport::Aborted
    }
}

/// The reply of an injected error: problem+json, marked `X-Chaos`.
fn injected_reply(status: StatusCode) -> Reply {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        storefront_kit::error::PROBLEM_JSON.parse().expect("static"),
    );
    headers.insert("x-chaos", "injected".parse().expect("static"));
    let body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": "fault injected by the BFF's chaos settings",
    });
    Reply {
        status,
        headers,
        body: Bytes::from(body.to_string()),
        injected: true,
    }
}

/// Every routed service.
#[derive(Debug, Default)]
pub struct Upstreams {
    pub services: Vec<Service>,
}

impl Upstreams {
    pub fn new(configs: &[UpstreamConfig], breaker: BreakerConfig, now: Instant) -> Self {
        Self {
            services: configs
                .iter()
                .filter(|c| !c.urls.is_empty())
                .map(|c| Service::new(c, breaker, now))
                .collect(),
        }
    }

    pub fn get(&self, service: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == service)
    }

    /// Every name a chaos fault may target: services and instances.
    pub fn targets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.services {
            out.push(s.name.clone());
            out.extend(s.instances.iter().map(|i| i.name.clone()));
        }
        out.dedup();
        out
    }

    /// Every instance's snapshot.
    pub fn views(&self, now: Instant) -> Vec<InstanceView> {
        self.services
            .iter()
            .flat_map(|s| s.instances.iter().map(move |i| i.view(now)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16) -> Attempt {
        Attempt::Reply(Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            injected: false,
        })
    }

    #[test]
    fn a_client_error_is_a_healthy_answer_and_never_retried() {
        for status in [400, 401, 404, 405, 408, 412, 413, 422, 429, 431, 501, 505] {
            assert_eq!(reply(status).verdict(), Verdict::Healthy, "{status}");
            assert!(!reply(status).retryable(), "{status}");
        }
    }

    #[test]
    fn server_errors_count_against_the_upstream_and_only_not_now_ones_are_retried() {
        for status in [500, 502, 503, 504, 507] {
            assert_eq!(reply(status).verdict(), Verdict::Faulty, "{status}");
        }
        assert!(!reply(500).retryable());
        assert!(!reply(507).retryable());
        for status in [502, 503, 504] {
            assert!(reply(status).retryable(), "{status}");
        }
    }

    #[test]
    fn transport_failures_are_faults_but_a_request_never_built_is_not_judged() {
        for t in [Transport::Connect, Transport::Timeout, Transport::Aborted] {
            assert_eq!(Attempt::Failed(t).verdict(), Verdict::Faulty);
            assert!(Attempt::Failed(t).retryable());
        }
        assert_eq!(
            Attempt::Failed(Transport::Local).verdict(),
            Verdict::NotJudged
        );
        assert!(!Attempt::Failed(Transport::Local).retryable());
    }
}
