//! Where the load goes: through the BFF when the fleet runs one
//! (`/api/<service>/...`, each user logged in as a real account, see
//! `load::login`), straight to each service's replicas otherwise. This is
//! the only place that decides.
//!
//! And how the requests get there: [`Conns`], a user's own HTTP/1.1
//! keep-alive connections (one per server it talks to), each spoken by
//! hand (`load::wire`). A shared pooled client (reqwest) cost the
//! generator more CPU per request than the catalog spent answering it: a
//! URL parse, a pool lock and a timer per request, and on this 2-core
//! machine every microsecond the generator spends is one the server does
//! not get. A user sends one request at a time, as goose's users and
//! wrk's connections do, so it needs no pool: it owns its connections.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Result;

use super::profile::Method;
use super::wire::{Invalid, Request, Wire, WireError};
use crate::run::Lab;

/// The response header an idempotent server sets on a replayed answer.
pub const REPLAYED: &str = "idempotent-replayed";

/// `--via`: where the load goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Through the BFF when the fleet runs one, else direct.
    #[default]
    Auto,
    /// Through the BFF (an error when the fleet has none).
    Bff,
    /// Straight to the services (e.g. to measure a service without the gateway).
    Direct,
}

#[derive(Debug, Clone)]
pub enum Targets {
    /// Every request goes to a BFF replica, prefixed with `/api/<service>`.
    Bff(Vec<String>),
    /// Each service's own replicas.
    Direct(BTreeMap<String, Vec<String>>),
}

impl Targets {
    pub fn resolve(lab: &Lab, services: &BTreeSet<String>, via: Via) -> Result<Self> {
        match (via, lab.urls("bff")) {
            (Via::Auto | Via::Bff, Ok(bff)) => return Ok(Targets::Bff(bff.to_vec())),
            (Via::Bff, Err(e)) => return Err(e.context("--via bff")),
            _ => {}
        }
        let mut direct = BTreeMap::new();
        for s in services {
            direct.insert(s.clone(), lab.urls(s)?.to_vec());
        }
        Ok(Targets::Direct(direct))
    }

    /// The URL of `path` on `service`; `pick` chooses the replica (a user
    /// sticks to one, as a client behind a load balancer would).
    pub fn url(&self, service: &str, path: &str, pick: usize) -> String {
        match self {
            Targets::Bff(urls) => format!("{}/api/{service}{path}", urls[pick % urls.len()]),
            Targets::Direct(m) => {
                let urls = &m[service];
                format!("{}{path}", urls[pick % urls.len()])
            }
        }
    }

    /// A base URL goose can take as its host (requests carry full URLs).
    pub fn any_base(&self) -> String {
        match self {
            Targets::Bff(urls) => urls[0].clone(),
            Targets::Direct(m) => m.values().next().map(|u| u[0].clone()).unwrap_or_default(),
        }
    }

    /// Every server a request may go to, as `host:port`, each once.
    pub fn authorities(&self) -> Vec<String> {
        let urls: Vec<&String> = match self {
            Targets::Bff(urls) => urls.iter().collect(),
            Targets::Direct(m) => m.values().flatten().collect(),
        };
        let mut out: Vec<String> = Vec::new();
        for u in urls {
            if let Some((a, _)) = split_url(u)
                && !out.iter().any(|o| o == a)
            {
                out.push(a.to_owned());
            }
        }
        out
    }

    /// `bff (1 replica)` or `direct: catalog ×2, claims ×1`.
    pub fn describe(&self) -> String {
        match self {
            Targets::Bff(urls) => format!("through the BFF ({} replica(s))", urls.len()),
            Targets::Direct(m) => format!(
                "direct: {}",
                m.iter()
                    .map(|(s, u)| format!("{s} ×{}", u.len()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// Longest a request may take, connecting included (as the CLI's client).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A whole answer (its body read to the end and discarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// The server replayed a stored answer (`Idempotent-Replayed: true`).
    pub replayed: bool,
}

/// Why there is no (whole) answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Timeout,
    Connect,
    Other,
}

impl Failure {
    /// The outcome label, as the recorder and reports spell it.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Timeout => "error: timeout",
            Failure::Connect => "error: connect",
            Failure::Other => "error: other",
        }
    }
}

/// One user's keep-alive connections, by server (`host:port`).
#[derive(Default)]
pub struct Conns {
    open: Vec<(String, Wire)>,
}

/// `http://host:port/path?q` → (`host:port`, `/path?q`).
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    Some(match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    })
}

fn method(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
    }
}

impl Conns {
    /// Sends one request and reads its whole body, within [`REQUEST_TIMEOUT`].
    /// A kept-alive connection the server closed meanwhile is replaced and
    /// the request sent again, only if it had not been written.
    pub async fn send(
        &mut self,
        m: Method,
        url: &str,
        headers: &[(String, String)],
        body: Option<String>,
    ) -> Result<Answer, Failure> {
        let Some((authority, path)) = split_url(url) else {
            return Err(Failure::Other);
        };
        let request = Request {
            method: method(m),
            authority,
            path,
            headers,
            body: body.as_deref().map(str::as_bytes),
        };
        let attempt = async {
            for retry in [false, true] {
                let wire = self.ready(authority, retry).await?;
                match wire.exchange(&request, REPLAYED).await {
                    Err(Invalid) => return Err(Failure::Other),
                    Ok(Ok((head, keep))) => {
                        if !keep {
                            self.forget(authority);
                        }
                        return Ok(Answer {
                            status: head.status,
                            replayed: head.replayed,
                        });
                    }
                    // Never acted on: the connection was closing.
                    Ok(Err(WireError::Unsent)) if !retry => {}
                    Ok(Err(_)) => {
                        self.forget(authority);
                        return Err(Failure::Other);
                    }
                }
            }
            Err(Failure::Other)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => {
                // The connection may still carry the late answer.
                self.forget(authority);
                Err(Failure::Timeout)
            }
        }
    }

    /// A connection to `authority` ready for a request: the kept one, or a
    /// new one (always new when `fresh`).
    async fn ready(&mut self, authority: &str, fresh: bool) -> Result<&mut Wire, Failure> {
        if fresh {
            self.forget(authority);
        }
        let i = match self.open.iter_mut().position(|(a, _)| a == authority) {
            Some(i) if !self.open[i].1.is_stale() => i,
            found => {
                if let Some(i) = found {
                    self.open.swap_remove(i);
                }
                let wire = connect(authority).await?;
                self.open.push((authority.to_owned(), wire));
                self.open.len() - 1
            }
        };
        Ok(&mut self.open[i].1)
    }

    fn forget(&mut self, authority: &str) {
        self.open.retain(|(a, _)| a != authority);
    }
}

async fn connect(authority: &str) -> Result<Wire, Failure> {
    Wire::connect(authority).await.map_err(|_| Failure::Connect)
}

/// The open model's connections: at most `limit` [`Conns`] in use at once
/// (as `wrk -c`), each request borrowing one for its exchange. A pass that
/// finds them all busy waits for one, and the wait counts in its latency
/// from the intended send time. Unbounded, a hiccup grew the connections
/// with the requests in flight (thousands of them at 10k req/s on this
/// machine), the server spent its cores on them and arrivals were dropped
/// below the rate the closed model sustained.
pub struct ConnPool {
    idle: Mutex<Vec<Conns>>,
    permits: tokio::sync::Semaphore,
}

/// Connections the open model keeps at most unless `load --connections`
/// says otherwise (as `wrk -c64`).
pub const OPEN_CONNECTIONS: usize = 64;

/// Connections [`ConnPool::warm`] opens at most, across the servers: a
/// pool of many servers (a direct run of the checkout profile) opens the
/// rest as the run needs them.
const WARM_CONNECTIONS: usize = 64;

/// A borrowed [`Conns`]; dropping it gives it back.
pub struct Lease<'a> {
    pool: &'a ConnPool,
    conns: Option<Conns>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl std::ops::Deref for Lease<'_> {
    type Target = Conns;
    fn deref(&self) -> &Conns {
        self.conns.as_ref().expect("held until dropped")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Conns {
        self.conns.as_mut().expect("held until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let (Some(c), Ok(mut idle)) = (self.conns.take(), self.pool.idle.lock())
            && !c.open.is_empty()
        {
            idle.push(c);
        }
    }
}

impl ConnPool {
    pub fn new(limit: usize) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(limit.max(1)),
        }
    }

    /// Opens the pool's connections ahead of the run, one to each of
    /// `authorities` per slot, as wrk opens its `-c` connections before it
    /// starts the clock: opened inside the run, the first arrivals wait for
    /// TCP handshakes the steady state never pays. A server that refuses
    /// is left for the run to meet (its requests count the failure).
    pub async fn warm(&self, authorities: &[String]) {
        let per_slot = authorities.len().max(1);
        let slots = self
            .permits
            .available_permits()
            .min(WARM_CONNECTIONS / per_slot);
        let mut warmed = Vec::with_capacity(slots);
        for _ in 0..slots {
            let mut c = Conns::default();
            for a in authorities {
                if let Ok(sender) = connect(a).await {
                    c.open.push((a.clone(), sender));
                }
            }
            if !c.open.is_empty() {
                warmed.push(c);
            }
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.extend(warmed);
        }
    }

    /// How many connection sets sit idle.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.idle.lock().map_or(0, |v| v.len())
    }

    /// Waits for a free slot; an idle [`Conns`] if there is one.
    pub async fn take(&self) -> Lease<'_> {
        let permit = self
            .permits
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let conns = self.idle.lock().ok().and_then(|mut v| v.pop());
        Lease {
            pool: self,
            conns: Some(conns.unwrap_or_default()),
            _permit: permit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_are_every_server_once() {
        let mut m = BTreeMap::new();
        m.insert(
            "catalog".into(),
            vec!["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
        );
        m.insert("claims".into(), vec!["http://127.0.0.1:1".into()]);
        assert_eq!(
            Targets::Direct(m).authorities(),
            ["127.0.0.1:1", "127.0.0.1:2"]
        );
        let bff = Targets::Bff(vec!["http://b:9".into()]);
        assert_eq!(bff.authorities(), ["b:9"]);
    }

    #[tokio::test]
    async fn warming_opens_a_connection_per_slot_and_skips_a_server_that_refuses() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = listener.local_addr().unwrap().to_string();
        let accepted = tokio::spawn(async move {
            let mut held = Vec::new();
            for _ in 0..3 {
                held.push(listener.accept().await.unwrap().0);
            }
            held.len()
        });
        // A port nothing listens on: bound, then closed.
        let down = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let pool = ConnPool::new(3);
        pool.warm(&[up.clone(), down.clone()]).await;
        assert_eq!(pool.idle(), 3);
        assert_eq!(accepted.await.unwrap(), 3);
        let lease = pool.take().await;
        assert_eq!(lease.open.len(), 1);
        assert_eq!(lease.open[0].0, up);

        let refused = ConnPool::new(2);
        refused.warm(&[down]).await;
        assert_eq!(refused.idle(), 0);
    }

    #[test]
    fn the_bff_prefixes_the_service_and_direct_picks_a_replica() {
        let bff = Targets::Bff(vec!["http://b:1".into()]);
        assert_eq!(
            bff.url("catalog", "/products/7", 5),
            "http://b:1/api/catalog/products/7"
        );
        let mut m = BTreeMap::new();
        m.insert(
            "catalog".into(),
            vec!["http://c:1".into(), "http://c:2".into()],
        );
        let d = Targets::Direct(m);
        assert_eq!(d.url("catalog", "/products", 0), "http://c:1/products");
        assert_eq!(d.url("catalog", "/products", 3), "http://c:2/products");
        assert_eq!(d.describe(), "direct: catalog ×2");
    }

    /// A real (minimal) HTTP/1.1 server on a free port: answers every
    /// request with `answer`, closing the connection after each when
    /// `close`; returns its address and a counter of accepted connections.
    async fn server(
        answer: &'static str,
        close: bool,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.clear();
                        if sock.write_all(answer.as_bytes()).await.is_err() || close {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

    #[tokio::test]
    async fn a_user_sends_its_requests_on_one_kept_alive_connection() {
        let (addr, accepted) = server(OK, false).await;
        let mut conns = Conns::default();
        for _ in 0..5 {
            let a = conns
                .send(Method::Get, &format!("http://{addr}/products/1"), &[], None)
                .await;
            assert_eq!(
                a,
                Ok(Answer {
                    status: 200,
                    replayed: false
                })
            );
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_and_the_request_still_answered() {
        let closing = "HTTP/1.1 201 Created\r\nidempotent-replayed: true\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let (addr, accepted) = server(closing, true).await;
        let mut conns = Conns::default();
        let headers = [("idempotency-key".to_owned(), "k1".to_owned())];
        for _ in 0..3 {
            let a = conns
                .send(
                    Method::Post,
                    &format!("http://{addr}/claims"),
                    &headers,
                    Some("{}".into()),
                )
                .await;
            assert_eq!(
                a,
                Ok(Answer {
                    status: 201,
                    replayed: true
                })
            );
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_kept_connection_the_server_dropped_while_idle_is_replaced_before_sending() {
        use tokio::io::AsyncWriteExt;
        // Answers as if it kept the connection (no `connection: close`),
        // then drops it and says so.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                crate::load::wire::tests::read_head(&mut sock).await;
                let _ = sock.write_all(OK.as_bytes()).await;
                drop(sock);
                let _ = closed_tx.send(());
            }
        });
        let mut conns = Conns::default();
        for _ in 0..3 {
            let a = conns
                .send(Method::Get, &format!("http://{addr}/products/1"), &[], None)
                .await;
            assert_eq!(a.map(|a| a.status), Ok(200));
            closed.recv().await.unwrap();
        }
    }

    #[tokio::test]
    async fn nobody_listening_is_a_connect_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let a = Conns::default()
            .send(Method::Get, &format!("http://{addr}/"), &[], None)
            .await;
        assert_eq!(a, Err(Failure::Connect));
        assert_eq!(Failure::Connect.label(), "error: connect");
    }

    #[test]
    fn a_url_splits_into_the_server_and_the_path_with_its_query() {
        assert_eq!(
            split_url("http://127.0.0.1:9/a/b?c=1"),
            Some(("127.0.0.1:9", "/a/b?c=1"))
        );
        assert_eq!(split_url("http://h:1"), Some(("h:1", "/")));
        assert_eq!(
            split_url("https://h/"),
            None,
            "no TLS: the fleet is plain HTTP"
        );
    }

    #[tokio::test]
    async fn the_open_models_pool_reuses_connections_and_never_holds_more_than_its_limit() {
        let (addr, accepted) = server(OK, false).await;
        let pool = std::sync::Arc::new(ConnPool::new(2));
        let url = format!("http://{addr}/");
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (pool, url) = (pool.clone(), url.clone());
            set.spawn(async move {
                let mut c = pool.take().await;
                c.send(Method::Get, &url, &[], None).await
            });
        }
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap().map(|a| a.status), Ok(200));
        }
        let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=2).contains(&n), "{n} connections for a pool of 2");
        assert!(pool.idle.lock().unwrap().len() <= 2);
    }
}
