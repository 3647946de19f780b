//! One attempt at one replica: the request as forwarded, what came back
//! (or which transport error), chaos injected on the way, and the verdict
//! the breaker and the retry loop act on.

use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};

use super::Ticket;
use super::wire::{Client, Outgoing};
use crate::chaos::{Action, Chaos};

/// A request as forwarded: everything needed to send it again on a retry.
/// Its `Debug` shows only the headers that are sent: the others (the
/// session cookie) never reach a log line through it.
#[derive(Clone)]
pub struct Forward {
    /// The client's method, sent as it came.
    pub method: Method,
    /// `/products/7?x=1`: the path after `/api/<service>`, with the query.
    pub path_and_query: String,
    /// The client's request headers, as they came.
    pub headers: HeaderMap,
    /// Those of `headers` that are sent upstream (an allowlist).
    pub send: &'static [HeaderName],
    /// The whole request body, kept so that a retry can send it again.
    pub body: Bytes,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sent: Vec<_> = self
            .headers
            .iter()
            .filter(|(name, _)| self.send.contains(name))
            .collect();
        f.debug_struct("Forward")
            .field("method", &self.method)
            .field("path_and_query", &self.path_and_query)
            .field("headers", &sent)
            .field("body", &self.body.len())
            .finish()
    }
}

/// An upstream's answer, whatever its status.
#[derive(Debug)]
pub struct Reply {
    /// The upstream's status (or the injected one).
    pub status: StatusCode,
    /// The upstream's response headers.
    pub headers: HeaderMap,
    /// The whole response body.
    pub body: Bytes,
    /// Produced by chaos, not by the upstream.
    pub injected: bool,
}

/// How an attempt ended without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// No connection could be made (refused, unreachable).
    Connect,
    /// No answer within the per-attempt timeout.
    Timeout,
    /// Reset mid-way, or an injected abort.
    Aborted,
    /// The request could not be built (the BFF's fault; never sent).
    Local,
}

/// One attempt's result.
#[derive(Debug)]
pub enum Attempt {
    /// The upstream answered (any status).
    Reply(Reply),
    /// It did not answer, and why.
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
    client: &Client,
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

async fn call(client: &Client, base: &str, forward: &Forward) -> Attempt {
    let trace = storefront_kit::telemetry::current_traceparent();
    let sent = client
        .send(Outgoing {
            method: &forward.method,
            base,
            path_and_query: &forward.path_and_query,
            headers: &forward.headers,
            send: forward.send,
            trace: trace.as_deref(),
            body: &forward.body,
            keep: &super::FORWARDED_ANSWER,
        })
        .await;
    match sent {
        Ok(answer) => Attempt::Reply(Reply {
            status: answer.status,
            headers: answer.headers,
            body: answer.body,
            injected: false,
        }),
        Err(transport) => Attempt::Failed(transport),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_shows_only_the_headers_it_sends() {
        static SEND: [HeaderName; 1] = [axum::http::header::IF_MATCH];
        let mut headers = HeaderMap::new();
        headers.insert("cookie", "session=secret".parse().unwrap());
        headers.insert("if-match", "\"1\"".parse().unwrap());
        let forward = Forward {
            method: Method::GET,
            path_and_query: "/p".into(),
            headers,
            send: &SEND,
            body: Bytes::new(),
        };
        let shown = format!("{forward:?}");
        assert!(
            shown.contains("if-match") && !shown.contains("secret"),
            "{shown}"
        );
    }

    fn reply(status: u16) -> Attempt {
        Attempt::Reply(Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            injected: false,
        })
    }

    #[test]
    fn an_injected_reply_sets_only_forwarded_headers() {
        let reply = injected_reply(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.headers.len(), 2);
        for name in reply.headers.keys() {
            assert!(super::super::FORWARDED_ANSWER.contains(name), "{name}");
        }
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
