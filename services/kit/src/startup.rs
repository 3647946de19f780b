//! How every service's `Application` starts and stops, and how that can
//! fail: [`bind`] `BIND_ADDR` in `build` (port 0 allowed, so tests learn the
//! real port), wrap the router in a [`Server`], start background work in
//! [`Tasks`], and [`Server::serve`] until the shutdown signal — which drains
//! the server first and only then stops the tasks.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::db::DbError;
use crate::http::server::{self, ServeOptions};

/// Why a service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `BIND_ADDR` is taken or not ours to bind.
    #[error("cannot bind BIND_ADDR {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A pool could not be built (malformed URL).
    #[error("{0}")]
    Pool(#[from] DbError),
    /// The server failed while serving.
    #[error("server error: {0}")]
    Serve(#[source] std::io::Error),
}

/// Binds `addr`; returns the listener and the port actually bound.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, u16), StartupError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind { addr, source })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?
        .port();
    Ok((listener, port))
}

/// A bound listener and the routes it will serve: built in
/// `Application::build` (so the port is known before serving starts),
/// consumed by [`Server::serve`].
pub struct Server {
    /// Bound by [`bind`].
    listener: TcpListener,
    /// The port actually bound (differs from `BIND_ADDR` when that says 0).
    port: u16,
    /// Routes wrapped by the kit's layers and probes.
    router: Router,
    /// How long in-flight requests get once the signal fires.
    grace: Duration,
    /// Timeouts, and whether handlers see the client's address.
    options: ServeOptions,
}

impl Server {
    /// `router` to be served on `listener` (whose port is `port`), draining
    /// for at most `grace` at shutdown.
    pub fn new(listener: TcpListener, port: u16, router: Router, grace: Duration) -> Self {
        Self {
            listener,
            port,
            router,
            grace,
            options: ServeOptions::new(false),
        }
    }

    /// Every request carries the client's address as
    /// `ConnectInfo<SocketAddr>` ([`crate::http::ClientAddr`]): for limits
    /// keyed on the address (the BFF's anonymous buckets, identity's
    /// guessing throttle). Same timeouts, same drain.
    pub fn with_client_addr(mut self) -> Self {
        self.options.connect_info = true;
        self
    }

    /// Spreads the connections over `workers` threads in all, this
    /// runtime's included, each with a single-threaded runtime of its own
    /// (`http/server.rs`); 1 (the default) keeps them all here.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.options.workers = workers.max(1);
        self
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `signal`, stops accepting, waits at most the grace
    /// period for in-flight requests, then stops `tasks` and waits for them
    /// (requests still draining may need them, so they go last). The
    /// caller closes its pools afterwards.
    ///
    /// Every connection gets the header-read timeout
    /// ([`crate::http::HEADER_READ_TIMEOUT`]); see `http/server.rs`.
    pub async fn serve(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
        tasks: Tasks,
    ) -> Result<(), StartupError> {
        let served =
            server::serve(self.listener, self.router, self.grace, signal, self.options).await;
        tasks.stop().await;
        served.map_err(StartupError::Serve)
    }
}

/// A service's background tasks and the [`CancellationToken`] that stops
/// them: the one shutdown mechanism. Dropping it (a test aborting the
/// serving future) cancels the token too, so no task outlives its service.
pub struct Tasks {
    /// Cancelled by [`Tasks::stop`] or on drop.
    stop: CancellationToken,
    /// What is running, named for the log if it panics.
    running: Vec<(&'static str, JoinHandle<()>)>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    /// No tasks yet, and a fresh token.
    pub fn new() -> Self {
        Self {
            stop: CancellationToken::new(),
            running: Vec::new(),
        }
    }

    /// The token a task watches to know when to stop.
    pub fn token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Spawns `task`, named `what` in the log.
    pub fn spawn(&mut self, what: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.running.push((what, tokio::spawn(task)));
    }

    /// Adopts a task something else spawned (it must watch [`Tasks::token`]).
    pub fn adopt(&mut self, what: &'static str, task: JoinHandle<()>) {
        self.running.push((what, task));
    }

    /// Cancels the token and waits for every task; a panic is logged.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for (what, task) in std::mem::take(&mut self.running) {
            if let Err(error) = task.await {
                tracing::error!(%error, what, "background task panicked");
            }
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_slow(addr: SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    /// A server whose `/slow` says on `started` that a request is in
    /// flight, then answers after `delay`.
    async fn slow_server(
        delay: Duration,
        grace: Duration,
    ) -> (Server, SocketAddr, tokio::sync::mpsc::Receiver<()>) {
        let (listener, port) = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        let (started_tx, started) = tokio::sync::mpsc::channel(1);
        let router = Router::new().route(
            "/slow",
            get(move || async move {
                let _ = started_tx.send(()).await;
                tokio::time::sleep(delay).await;
                "done"
            }),
        );
        let server = Server::new(listener, port, router, grace);
        (server, ([127, 0, 0, 1], port).into(), started)
    }

    #[tokio::test]
    async fn in_flight_request_finishes_after_the_signal_and_tasks_stop_after_the_drain() {
        let (server, addr, mut started) =
            slow_server(Duration::from_millis(300), Duration::from_secs(5)).await;
        let stop = CancellationToken::new();
        let mut tasks = Tasks::new();
        let token = tasks.token();
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
        tasks.spawn("watcher", async move {
            token.cancelled().await;
            let _ = stopped_tx.send(());
        });
        let serving = tokio::spawn(server.serve(stop.clone().cancelled_owned(), tasks));
        let request = tokio::spawn(get_slow(addr));
        started.recv().await.unwrap();
        stop.cancel();

        let response = request.await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("done"), "{response}");
        serving.await.unwrap().unwrap();
        assert!(stopped_rx.await.is_ok(), "the task was not cancelled");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn serve_returns_when_grace_expires() {
        let (server, addr, mut started) =
            slow_server(Duration::from_secs(60), Duration::from_millis(200)).await;
        let stop = CancellationToken::new();
        let serving = tokio::spawn(server.serve(stop.clone().cancelled_owned(), Tasks::new()));
        let _request = tokio::spawn(get_slow(addr));
        started.recv().await.unwrap();
        stop.cancel();
        let finished = tokio::time::timeout(Duration::from_secs(5), serving).await;
        assert!(
            finished.is_ok(),
            "serve did not give up after the grace period"
        );
    }

    #[test]
    fn dropping_the_tasks_cancels_their_token() {
        let tasks = Tasks::new();
        let token = tasks.token();
        drop(tasks);
        assert!(token.is_cancelled());
    }

    #[tokio::test]
    async fn port_zero_reports_the_real_port_and_a_taken_port_names_bind_addr() {
        let (listener, port) = bind(([127, 0, 0, 1], 0).into()).await.unwrap();
        assert_ne!(port, 0);
        let err = bind(([127, 0, 0, 1], port).into()).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot bind BIND_ADDR 127.0.0.1:{port}")),
            "{err}"
        );
        drop(listener);
    }
}
