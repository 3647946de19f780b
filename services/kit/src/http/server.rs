//! The accept loop every service runs. Not `axum::serve`: that cannot set
//! hyper's header-read timeout, so a client could hold a connection open
//! forever by never finishing its headers. Here each HTTP/1.1 connection is
//! served by hyper with a timer and [`HEADER_READ_TIMEOUT`], watched for a
//! graceful drain, and optionally handed the client's address as
//! `ConnectInfo<SocketAddr>` (what the BFF's per-address limits need).
//!
//! A server may spread its connections over worker threads
//! ([`ServeOptions::workers`]), each running a single-threaded runtime of
//! its own, as nginx spreads them over worker processes: the accept loop
//! deals accepted connections out in turn, and a connection then lives on
//! its worker, so a request's hops between tasks stay on one thread. The
//! graceful drain covers every worker's connections; the workers stop when
//! the drain ends (or when the serving future is dropped).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A client that has not sent its complete request headers by then is
/// disconnected. hyper measures it from the moment the connection waits for
/// a request, so it also closes a keep-alive connection idle this long.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client of a storefront service should keep an idle pooled
/// connection (`reqwest::ClientBuilder::pool_idle_timeout`): well below
/// [`HEADER_READ_TIMEOUT`], so the client always drops an idle connection
/// before the server closes it, and never sends a request into a socket the
/// server is closing (the keep-alive race, seen as "connection closed before
/// message completed").
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

// Changing either constant must keep the client's the shorter, with margin.
const _: () = assert!(CLIENT_IDLE_TIMEOUT.as_millis() * 2 <= HEADER_READ_TIMEOUT.as_millis());

/// Each runtime serving connections keeps a timer due within this long
/// ([`keep_timer_floor`]); a timer a request sets further out than this
/// costs no wake-up of the runtime's driver.
pub const TIMER_FLOOR: Duration = Duration::from_secs(1);

/// How a server treats its connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeOptions {
    /// See [`HEADER_READ_TIMEOUT`]; tests shorten it.
    pub header_read: Duration,
    /// Insert `ConnectInfo<SocketAddr>` into every request.
    pub connect_info: bool,
    /// Threads serving connections, the calling runtime's included: 1
    /// serves every connection on the caller's runtime.
    pub workers: usize,
}

impl ServeOptions {
    pub(crate) fn new(connect_info: bool) -> Self {
        Self {
            header_read: HEADER_READ_TIMEOUT,
            connect_info,
            workers: 1,
        }
    }
}

/// An accepted connection on its way to a worker thread, with the watch
/// that lets the drain reach it there.
type Handoff = (std::net::TcpStream, SocketAddr, Watcher);

/// How every connection is served, wherever it runs.
#[derive(Clone)]
struct Connections {
    router: Router,
    builder: http1::Builder,
    connect_info: bool,
}

impl Connections {
    /// Serves `stream` on the current runtime until it ends or the drain
    /// closes it.
    fn spawn(&self, stream: TcpStream, peer: SocketAddr, watcher: Watcher) {
        let router = self.router.clone();
        let connect_info = self.connect_info;
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            if connect_info {
                request.extensions_mut().insert(ConnectInfo(peer));
            }
            router.clone().oneshot(request.map(Body::new))
        });
        let connection =
            watcher.watch(self.builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
}

/// Keeps a timer due within [`TIMER_FLOOR`] on the current runtime until
/// `stop` is cancelled.
///
/// tokio wakes its own driver (an eventfd `write(2)`, then one more event
/// out of `epoll_wait`) whenever a timer is set to fire before the earliest
/// one the driver went to sleep with. A proxied request sets one, its
/// attempt's timeout (2 s in the BFF), and on a connection alone on its
/// thread the only timer left while it waits for a request is hyper's
/// header-read timeout (10 s): so every such request paid one more syscall
/// (seen with `strace -f` on the BFF under `wrk -c1`: 7 syscalls a request,
/// 6 with this floor: a read and a write each way and two `epoll_wait`).
/// With a timer always due within a second, a timer set a second or more
/// ahead is never the earliest. The cost is a wake-up a second on an idle
/// thread.
async fn keep_timer_floor(stop: CancellationToken) {
    let mut tick = tokio::time::interval(TIMER_FLOOR);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
    }
}

/// Starts a worker thread with a runtime of its own, serving the
/// connections sent to it until `stop` is cancelled; then its runtime is
/// dropped, and with it any connection still open.
fn start_worker(
    index: usize,
    connections: Connections,
    stop: CancellationToken,
) -> std::io::Result<mpsc::UnboundedSender<Handoff>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (handoff, mut handed) = mpsc::unbounded_channel::<Handoff>();
    std::thread::Builder::new()
        .name(format!("http-worker-{index}"))
        .spawn(move || {
            runtime.block_on(async move {
                tokio::spawn(keep_timer_floor(stop.clone()));
                loop {
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => return,
                        next = handed.recv() => match next {
                            Some((stream, peer, watcher)) => match TcpStream::from_std(stream) {
                                Ok(stream) => connections.spawn(stream, peer, watcher),
                                Err(error) => tracing::debug!(%error, %peer, "cannot adopt a connection"),
                            },
                            // The accept loop is done; the drain goes on.
                            None => break,
                        },
                    }
                }
                stop.cancelled().await;
            });
        })?;
    Ok(handoff)
}

/// `count` worker threads (fewer if the OS refuses some, said in the log).
fn start_workers(
    count: usize,
    connections: &Connections,
    stop: &CancellationToken,
) -> Vec<mpsc::UnboundedSender<Handoff>> {
    let mut workers = Vec::with_capacity(count);
    for index in 1..=count {
        match start_worker(index, connections.clone(), stop.clone()) {
            Ok(handoff) => workers.push(handoff),
            Err(error) => {
                tracing::warn!(%error, started = workers.len(), "cannot start an HTTP worker thread; serving with fewer");
                break;
            }
        }
    }
    workers
}

/// Serves `router` on `listener` until `signal`, then stops accepting and
/// waits at most `grace` for in-flight requests (idle keep-alive
/// connections are closed at once).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    grace: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut signal = std::pin::pin!(signal);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read);
    let connections = Connections {
        router,
        builder,
        connect_info: options.connect_info,
    };
    // Cancelled when this function returns or its future is dropped.
    let stop_workers = CancellationToken::new();
    let _stop_workers = stop_workers.clone().drop_guard();
    tokio::spawn(keep_timer_floor(stop_workers.clone()));
    let workers = start_workers(
        options.workers.saturating_sub(1),
        &connections,
        &stop_workers,
    );
    let mut turn = 0usize;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        // Dealt out in turn: this runtime, then each worker.
        let slot = turn % (workers.len() + 1);
        turn = turn.wrapping_add(1);
        if slot == 0 {
            connections.spawn(stream, peer, graceful.watcher());
            continue;
        }
        match stream.into_std() {
            Ok(stream) => {
                if workers[slot - 1]
                    .send((stream, peer, graceful.watcher()))
                    .is_err()
                {
                    tracing::debug!(%peer, "an HTTP worker is gone; connection dropped");
                }
            }
            Err(error) => tracing::debug!(%error, %peer, "cannot hand a connection over"),
        }
    }
    drop(listener);
    drop(workers);
    tracing::info!("no longer accepting connections; draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("server drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(
            grace_secs = grace.as_secs_f64(),
            "grace period over; abandoning in-flight requests"
        ),
    }
    Ok(())
}

/// An accept error is the listener's, not one client's when it is about
/// resources (too many open files): back off briefly instead of spinning.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Peer address type, re-exported for callers of the connect-info server.
pub type ClientAddr = ConnectInfo<SocketAddr>;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Extension;
    use axum::routing::get;
    use std::sync::Arc;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn spawn(options: ServeOptions) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let router = Router::new().route(
            "/peer",
            get(|info: Option<Extension<ClientAddr>>| async move {
                info.map_or("none".to_owned(), |Extension(ConnectInfo(a))| {
                    a.ip().to_string()
                })
            }),
        );
        let (addr, stop, _served) = spawn_router(router, options).await;
        (addr, stop)
    }

    async fn spawn_router(
        router: Router,
        options: ServeOptions,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(
            listener,
            router,
            Duration::from_secs(10),
            async move {
                let _ = stop_rx.await;
            },
            options,
        ));
        (addr, stop_tx, served)
    }

    async fn get_peer(addr: SocketAddr) -> String {
        fetch(addr, "/peer").await
    }

    /// One request on a connection of its own; the whole response.
    async fn fetch(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    /// Answers with the name of the thread that served the request and
    /// the client's address as the handler saw it.
    fn where_served() -> Router {
        Router::new().route(
            "/where",
            get(|info: Option<Extension<ClientAddr>>| async move {
                let peer = info.map_or("none".to_owned(), |Extension(ConnectInfo(a))| {
                    a.ip().to_string()
                });
                let thread = std::thread::current();
                format!("{}|{peer}", thread.name().unwrap_or("unnamed"))
            }),
        )
    }

    fn with_workers(workers: usize) -> ServeOptions {
        ServeOptions {
            workers,
            ..ServeOptions::new(true)
        }
    }

    #[tokio::test]
    async fn connections_are_dealt_out_in_turn_over_the_workers() {
        let (addr, _stop, _served) = spawn_router(where_served(), with_workers(3)).await;
        let mut threads = Vec::new();
        for _ in 0..6 {
            let response = fetch(addr, "/where").await;
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            let body = response.rsplit("\r\n\r\n").next().unwrap().to_owned();
            let (thread, peer) = body.split_once('|').unwrap();
            assert_eq!(
                peer, "127.0.0.1",
                "the client's address reaches every worker"
            );
            threads.push(thread.to_owned());
        }
        let here = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        assert_eq!(
            threads,
            [
                &here,
                "http-worker-1",
                "http-worker-2",
                &here,
                "http-worker-1",
                "http-worker-2"
            ]
        );
    }

    #[tokio::test]
    async fn one_worker_serves_every_connection_on_the_callers_runtime() {
        let (addr, _stop, _served) = spawn_router(where_served(), with_workers(1)).await;
        let here = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        for _ in 0..3 {
            let response = fetch(addr, "/where").await;
            assert!(
                response.ends_with(&format!("{here}|127.0.0.1")),
                "{response}"
            );
        }
    }

    #[tokio::test]
    async fn the_drain_waits_for_a_request_in_flight_on_a_worker() {
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel::<String>();
        let release = Arc::new(tokio::sync::Notify::new());
        let held = release.clone();
        let router = where_served().route(
            "/slow",
            get(move || {
                let (started_tx, held) = (started_tx.clone(), held.clone());
                async move {
                    let thread = std::thread::current().name().unwrap_or("").to_owned();
                    let _ = started_tx.send(thread);
                    held.notified().await;
                    "done"
                }
            }),
        );
        let (addr, stop, served) = spawn_router(router, with_workers(2)).await;
        // The first connection is served here, the second on the worker.
        assert!(fetch(addr, "/where").await.starts_with("HTTP/1.1 200"));
        let slow = tokio::spawn(fetch(addr, "/slow"));
        let thread = tokio::time::timeout(Duration::from_secs(10), started.recv())
            .await
            .expect("the slow request started")
            .unwrap();
        assert_eq!(thread, "http-worker-1");
        stop.send(()).unwrap();
        // Still draining while the request is held; the listener is closed.
        let refused = async {
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_err() {
                    break;
                }
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), refused)
            .await
            .expect("the listener closed at the signal");
        assert!(!served.is_finished(), "the drain waits for the request");
        release.notify_one();
        let response = tokio::time::timeout(Duration::from_secs(10), slow)
            .await
            .expect("the held request finished")
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("done"), "{response}");
        tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("the server finished draining")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn workers_stop_when_the_serving_future_is_dropped() {
        let (addr, _stop, served) = spawn_router(where_served(), with_workers(2)).await;
        // A keep-alive connection on the worker: it ends only when its
        // worker's runtime does.
        assert!(fetch(addr, "/where").await.starts_with("HTTP/1.1 200"));
        let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /where HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        kept.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        served.abort();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), kept.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "the worker's connection outlived its server"
        );
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected_within_the_timeout() {
        let options = ServeOptions {
            header_read: Duration::from_millis(300),
            connect_info: false,
            workers: 1,
        };
        let (addr, _stop) = spawn(options).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        // Reading to the end only finishes once the server closes; the
        // deadline is generous, the assertion is that it closes at all.
        let closed =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "connection still open after 10 s");
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn the_timer_floor_runs_until_it_is_stopped() {
        let stop = CancellationToken::new();
        let floor = tokio::spawn(keep_timer_floor(stop.clone()));
        // Its first tick is at once; it then waits for the next.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!floor.is_finished(), "the floor stopped on its own");
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(5), floor)
            .await
            .expect("the floor did not stop when cancelled")
            .expect("the floor panicked");
    }

    #[tokio::test]
    async fn connect_info_is_handed_to_handlers_only_when_asked_for() {
        let (with, _s1) = spawn(ServeOptions::new(true)).await;
        let (without, _s2) = spawn(ServeOptions::new(false)).await;
        assert!(get_peer(with).await.ends_with("127.0.0.1"));
        assert!(get_peer(without).await.ends_with("none"));
    }
}
